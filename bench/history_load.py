"""History pages at rising rates, straight at the history query service over gRPC, asked for
by the compiled generator (``bench/loadgen``, target "history") while CPU is sampled."""

from __future__ import annotations

from typing import Any

from bench import cpu, generator
from bench.reach import generator_tls
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
        **generator_tls(),
        "history": {
            "address": address,
            "token": token,
            "chat_id": chat_id,
            "limit": limit,
            "rate": rate,
            "duration": duration,
        },
    }
    raw, sampler = generator.run(plan, accounted)
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
