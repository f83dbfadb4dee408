"""Running the compiled load generator (``bench/loadgen``, built by ``./dev up`` into
``.infra/bin/loadgen``) on a plan, with the CPU of the named processes sampled meanwhile."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import cpu
from infra.layout import Layout


def binary(layout: Layout | None = None) -> Path:
    found = (layout or Layout.from_env()).bin / "loadgen"
    if not found.is_file():
        raise SystemExit(f"{found} is missing: ./dev up builds it")
    return found


def run(plan: dict[str, Any], accounted: dict[str, int]) -> tuple[dict[str, Any], cpu.Sampler]:
    """The generator's result for ``plan``, and the CPU samples taken while it ran (the
    generator itself is sampled as "generator"). Blocking: run it in a thread."""
    with tempfile.TemporaryDirectory() as tmp:
        plan_path, out_path = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan_path.write_text(json.dumps(plan))
        with cpu.Sampler(dict(accounted)) as sampler:
            process = subprocess.Popen(
                [str(binary()), "-plan", str(plan_path), "-out", str(out_path)]
            )
            sampler.add("generator", process.pid)
            code = process.wait()
        if code != 0:
            raise RuntimeError(f"the load generator exited with {code}")
        return json.loads(out_path.read_text()), sampler
