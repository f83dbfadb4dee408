"""History pages at rising rates, straight at the history query service over gRPC, asked for
by the compiled generator (``bench/loadgen``, target "history") while CPU is sampled."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import cpu
from bench.e2e import generator_binary
from bench.stats import summary


def pages(
    address: str,
    token: str,
    chat_id: str,
    rate: float,
    duration: float,
    accounted: dict[str, int],
    limit: int = 50,
) -> dict[str, Any]:
    """Blocking: run it in a thread."""
    plan = {
        "target": "history",
        "conns": 4,
        "history": {
            "address": address,
            "token": token,
            "chat_id": chat_id,
            "limit": limit,
            "rate": rate,
            "duration": duration,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        plan_path, out_path = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan_path.write_text(json.dumps(plan))
        with cpu.Sampler(dict(accounted)) as sampler:
            generator = subprocess.Popen(
                [str(generator_binary()), "-plan", str(plan_path), "-out", str(out_path)]
            )
            sampler.add("generator", generator.pid)
            code = generator.wait()
        if code != 0:
            raise RuntimeError(f"the load generator exited with {code}")
        raw = json.loads(out_path.read_text())
    start, end = raw["send_start_unix_ns"] / 1e9, raw["send_end_unix_ns"] / 1e9
    first, last = sampler.window(start + min(1.0, (end - start) / 4), end)
    served = round(len(raw["page_ms"] or []) * (last.wall - first.wall) / max(end - start, 1e-9))
    return {
        "rate": rate,
        "duration_s": duration,
        "limit": limit,
        "errors": sum(raw["errors"].values()) + raw["short_pages"],
        "error_codes": raw["errors"],
        "short_pages": raw["short_pages"],
        "page_ms": summary(raw["page_ms"] or []),
        "cpu": cpu.usage(first, last, ("generator", "bench"), served),
    }
