"""Turning bench/results/*.json into tables, plots and docs/benchmarks.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TARGETS = {
    "e2e_p99_ms_at_500": ("<=", 25.0),
    "e2e_p50_over_kafka_p50": ("<=", 2.0),
    "max_sustained_msgs_per_s": (">=", 3000.0),
    "rss_kib_per_stream": ("<=", 50.0),
    "history_page_p99_ms_at_500": ("<=", 10.0),
}


def downsample(points: list[Any], limit: int) -> list[Any]:
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)]


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _plots(results: Path, name: str, run: dict[str, Any]) -> list[str]:
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


def _row(label: str, stats: dict[str, float]) -> str:
    return (
        f"| {label} | {stats['p50']} | {stats['p90']} | {stats['p99']} | {stats['p99_9']} | "
        f"{stats['max']} | {stats['count']} |"
    )


HEADER = (
    "| what | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | samples |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


def write(results: Path, docs: Path) -> None:
    e2e = _load(results, "e2e-500")
    floors = _load(results, "floors-500")
    step = _load(results, "step")
    idle = _load(results, "idle")
    history = _load(results, "history")
    keys: dict[str, float | str] = {}
    if e2e:
        keys["e2e_p50_ms_at_500"] = e2e["result"]["e2e_ms"]["p50"]
        keys["e2e_p99_ms_at_500"] = e2e["result"]["e2e_ms"]["p99"]
    if floors:
        keys["kafka_floor_p50_ms_at_500"] = floors["result"]["kafka"]["produce_to_consume_ms"][
            "p50"
        ]
    if e2e and floors:
        keys["e2e_p50_over_kafka_p50"] = round(
            float(keys["e2e_p50_ms_at_500"]) / float(keys["kafka_floor_p50_ms_at_500"]), 2
        )
    keys["centrifugo_p99_ms_at_500"] = math.nan  # not measured: see the Peer section
    if step:
        keys["max_sustained_msgs_per_s"] = step["result"]["max_sustained_rate"]
    if idle:
        keys["rss_kib_per_stream"] = idle["result"]["rss_kib_per_stream"]
    if history:
        at_500 = [lv for lv in history["result"]["levels"] if lv["rate"] == 500]
        if at_500:
            keys["history_page_p99_ms_at_500"] = at_500[0]["page_ms"]["p99"]

    lines: list[str] = ["# Benchmarks", ""]
    lines += [f"{key}: {value}" for key, value in keys.items()]
    lines += ["", "(`nan`: not measured; the sections below say why.)"]
    lines += [
        "",
        "Numbers from `bench/results/*.json`; regenerate this page with `python -m bench report`.",
        "",
    ]
    machine = next((r["machine"] for r in (e2e, floors, step, idle, history) if r), None)
    if machine:
        lines += [
            "## Machine",
            "",
            f"{machine['cpus']} cores ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
            f"Python {machine['python']}, Linux {machine['kernel']}. Everything ran on this one "
            "machine at once: Kafka, Cassandra, Redis, Jaeger, every service and the load generator.",
            "",
        ]
    lines += ["## Targets", "", "| key | target | measured | met |", "| --- | --- | --- | --- |"]
    for key, (op, target) in TARGETS.items():
        value = keys.get(key)
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            met = value <= target if op == "<=" else value >= target
            lines.append(f"| {key} | {op} {target:g} | {value} | {'yes' if met else 'no'} |")
        else:
            lines.append(f"| {key} | {op} {target:g} | not measured | - |")
    lines.append("")
    if e2e:
        r = e2e["result"]
        plots = _plots(results, "e2e-500", e2e)
        lines += [
            "## (a) 500 messages/s end to end",
            "",
            f"Command: `{e2e['command']}` ({e2e['measured_at']}).",
            f"{r['users']} users holding streams, {r['senders']} senders, {r['body_bytes']}-byte bodies, "
            f"{r['duration_s']:g} s. Acknowledged {r['acked']} of {r['attempted']}; lost deliveries "
            f"{r['lost_deliveries']}, duplicate deliveries {r['duplicate_deliveries']}, missing in "
            f"history {r['persisted_missing']}, duplicated in history {r['persisted_duplicates']}.",
            "",
            HEADER,
            _row("send → acknowledged", r["send_ack_ms"]),
            _row("send → event on each recipient stream", r["e2e_ms"]),
        ]
        if floors:
            lines.append(
                _row(
                    "floor: raw Kafka produce → consume",
                    floors["result"]["kafka"]["produce_to_consume_ms"],
                )
            )
            lines.append(
                _row("floor: raw Cassandra insert", floors["result"]["cassandra"]["insert_ms"])
            )
        if floors:
            lines += [
                "",
                f"Floors: `{floors['command']}` ({floors['measured_at']}), same broker and node, "
                "with the services idle.",
            ]
        lines.append("")
        lines += [f"![{p}](../bench/results/{p})" for p in plots]
        lines.append("")
    if step:
        lines += [
            "## (b) Rate stepped up",
            "",
            f"Command: `{step['command']}` ({step['measured_at']}).",
            "",
        ]
        lines += [
            "| rate/s | acked/s | e2e p50 ms | e2e p99 ms | ack p99 ms | lost | dup | missing in history |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in step["result"]["steps"]:
            lines.append(
                f"| {s['rate']:g} | {s['acked_per_s']} | {s['e2e_ms']['p50']} | {s['e2e_ms']['p99']} | "
                f"{s['send_ack_ms']['p99']} | {s['lost_deliveries']} | {s['duplicate_deliveries']} | "
                f"{s['persisted_missing']} |"
            )
        lines += [
            "",
            f"Highest rate sustained (p99 ≤ 100 ms, nothing lost): {step['result']['max_sustained_rate']:g}/s.",
            "",
        ]
    if idle:
        r = idle["result"]
        lines += [
            "## (c) Idle streams on one messaging server",
            "",
            f"Command: `{idle['command']}` ({idle['measured_at']}).",
            f"{r['ready']} of {r['streams']} streams open in {r['open_seconds']} s; messaging RSS "
            f"{r['rss_before_kib']} KiB before, {r['rss_after_kib']} KiB after: "
            f"**{r['rss_kib_per_stream']} KiB per stream**.",
            "",
        ]
    if history:
        lines += [
            "## (d) 50-message history pages",
            "",
            f"Command: `{history['command']}` ({history['measured_at']}).",
            "",
            HEADER,
        ]
        for level in history["result"]["levels"]:
            lines.append(
                _row(f"{level['rate']:g} pages/s (errors {level['errors']})", level["page_ms"])
            )
        lines.append("")
    moves = _load(results, "moves")
    if moves:
        r = moves["result"]
        lines += [
            "## (e) Live partition moves",
            "",
            f"Command: `{moves['command']}` ({moves['measured_at']}).",
            f"{r['streams']} idle streams spread over all partitions; each round moves half of each "
            "server's partitions to the other server through the admin API (round 2 moves them "
            "back). Times are from the moment the change was stored; a moved stream is resumed "
            "when it is caught up on its new owner. "
            f"Subscribes refused by a server that did not own the partition (yet): {r['refusals']}; "
            f"retried after UNAVAILABLE: {r['retries']}.",
            "",
            HEADER,
        ]
        for number, round_ in enumerate(r["rounds"]):
            lines.append(
                _row(
                    f"round {number + 1}: redirect received ({round_['moved_streams']} streams)",
                    round_["redirect_ms"],
                )
            )
            lines.append(
                _row(f"round {number + 1}: resumed on the new owner", round_["resumed_ms"])
            )
        lines.append("")
    lines += [
        "## Peer",
        "",
        "Centrifugo v6 could not be built here: the Go module proxy this machine reaches answers "
        "`403 This module version is not available` for `github.com/centrifugal/centrifugo/v6` "
        "(and `/v5`), even for the version list. No other source of it is reachable, so there is "
        "no peer number.",
        "",
    ]
    extra = docs.with_name("benchmarks-notes.md")
    if extra.is_file():
        lines += [extra.read_text().strip(), ""]
    docs.write_text("\n".join(lines))
    (results / "summary.md").write_text("\n".join(lines).replace("../bench/results/", ""))
    print(f"wrote {docs} and {results / 'summary.md'}")
