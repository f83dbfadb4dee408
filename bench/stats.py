"""Latency summaries: the percentiles every report uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    found = {name: round(percentile(ordered, pct), 3) for name, pct in PERCENTILES}
    found["max"] = round(ordered[-1], 3) if ordered else math.nan
    found["count"] = len(ordered)
    return found
