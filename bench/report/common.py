"""What every section of the report uses: reading a result, table rows, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: What the step scenario counts as sustained.
SUSTAINED_P99_MS = 100.0


def downsample(points: list[Any], limit: int) -> list[Any]:
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)]


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def plots(results: Path, name: str, run: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = run["result"]["timeline"]
    if not timeline:
        return []
    latencies = sorted(latency for _, latency in timeline)
    made = []
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(latencies, [(i + 1) / len(latencies) for i in range(len(latencies))])
    axis.set_xscale("log")
    axis.set_xlabel("end-to-end latency (ms, log scale)")
    axis.set_ylabel("fraction of deliveries")
    axis.set_title(f"{name}: latency CDF")
    axis.grid(True, which="both", alpha=0.3)
    path = results / f"{name}-cdf.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    made.append(path.name)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.scatter([t for t, _ in timeline], [lat for _, lat in timeline], s=2, alpha=0.4)
    axis.set_yscale("log")
    axis.set_xlabel("seconds since the first send")
    axis.set_ylabel("end-to-end latency (ms, log scale)")
    axis.set_title(f"{name}: latency over time")
    axis.grid(True, which="both", alpha=0.3)
    path = results / f"{name}-timeline.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    made.append(path.name)
    return made


def row(label: str, stats: dict[str, float]) -> str:
    return (
        f"| {label} | {stats['p50']} | {stats['p90']} | {stats['p99']} | {stats['p99_9']} | "
        f"{stats['max']} | {stats['count']} |"
    )


HEADER = (
    "| what | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | samples |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def sustained(step: dict[str, Any]) -> dict[str, Any] | None:
    """The highest step with p99 within SUSTAINED_P99_MS and nothing lost or duplicated."""
    good = [
        s
        for s in step["steps"]
        if s["e2e_ms"]["p99"] <= SUSTAINED_P99_MS
        and s["acked"] == s["attempted"]
        and s["lost_deliveries"] == 0
        and s["duplicate_deliveries"] == 0
        and s.get("persisted_missing", 0) == 0
        and s.get("persisted_duplicates", 0) == 0
    ]
    return max(good, key=lambda s: s["rate"], default=None)


def processes_table(usage: dict[str, Any]) -> list[str]:
    lines = [
        "| process | cores | ms of CPU per message |",
        "| --- | --- | --- |",
    ]
    for name, share in usage["processes"].items():
        lines.append(f"| {name} | {share['cores']} | {share['cpu_ms_per_msg']} |")
    lines.append(f"| (not attributed to a process) | {usage['unattributed_cores']} | |")
    return lines
