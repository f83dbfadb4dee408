"""Random secrets the local stacks share, each a file in ``.infra/secrets``."""

from __future__ import annotations

import secrets
from pathlib import Path

from infra.layout import Layout


def secret(layout: Layout, name: str) -> str:
    """The secret ``.infra/secrets/<name>`` holds, made (random, owner-only) on first use."""
    path = secret_path(layout, name)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def secret_path(layout: Layout, name: str) -> Path:
    return layout.state / "secrets" / name
