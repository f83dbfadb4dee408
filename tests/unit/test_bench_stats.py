import math

from bench.report import downsample
from bench.stats import percentile, summary


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100
    assert math.isnan(percentile([], 50))


def test_summary_names_every_percentile_and_the_max() -> None:
    found = summary([5.0, 1.0, 3.0])
    assert found == {"p50": 3.0, "p90": 5.0, "p99": 5.0, "p99_9": 5.0, "max": 5.0, "count": 3}


def test_downsample_keeps_order_and_bounds_size() -> None:
    points = list(range(10_000))
    kept = downsample(points, 100)
    assert len(kept) == 100
    assert kept == sorted(kept)
    assert downsample(points[:50], 100) == points[:50]
