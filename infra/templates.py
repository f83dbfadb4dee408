"""Rendering the checked-in config templates: ``{{name}}`` placeholders, nothing else."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from infra.errors import InfraError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill every ``{{name}}``; an unknown name is an error, never left in a config file."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise InfraError(f"config template uses {{{{{name}}}}} but no value was given for it")
        return str(values[name])

    return _PLACEHOLDER.sub(lookup, template)


def render_file(source: Path, target: Path, values: Mapping[str, object]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(source.read_text(), values))
    return target
