"""The page's head: one ``key: value`` line per summary figure, the machine, the targets."""

from __future__ import annotations

import math
from pathlib import Path

from bench.report import cluster
from bench.report.common import load, sustained

#: Summary key -> (comparison, target). Keys without a target are reported only.
TARGETS = {
    "e2e_p99_ms_at_500": ("<=", 25.0),
    "e2e_p50_over_kafka_p50": ("<=", 2.0),
    "cpu_ms_per_msg_at_500": ("<=", 2.0),
    "max_sustained_msgs_per_s": (">=", 1500.0),
    "cpu_ms_per_msg_at_max": ("<=", 1.0),
    "generator_cpu_share_at_max": ("<=", 0.1),
    "rss_kib_per_stream": ("<=", 40.0),
    "history_page_p99_ms_at_500": ("<=", 10.0),
    # A revoked session's streams end within a second of the logout being sent.
    "revocation_p99_ms": ("<=", 1000.0),
    # Big groups and browsers (issue 24).
    "group1000_cpu_ms_per_msg": ("<=", 25.0),
    "group1000_e2e_p99_ms": ("<=", 50.0),
    "group10000_cpu_ms_per_msg": ("<=", 60.0),
    "ws_rss_kib_per_conn": ("<=", 25.0),
    # At 100/s, within twice what raw Kafka takes without batching.
    "e2e_p50_over_latency_floor_at_100": ("<=", 2.0),
}


def summary_keys(results: Path) -> dict[str, float]:
    e2e = load(results, "e2e-500")
    low = load(results, "e2e-100")
    step = load(results, "step")
    idle = load(results, "idle")
    history = load(results, "history")
    peer = load(results, "peer-500")
    revoked = load(results, "revocation")
    ws_idle = load(results, "ws-idle")
    ws_e2e = load(results, "ws-e2e-200")
    group = load(results, "group1000")
    big_group = load(results, "group10000")
    with_receipts = load(results, "e2e-500-receipts")
    death = load(results, "presence-death")
    keys: dict[str, float] = {}
    if e2e:
        r = e2e["result"]
        keys["e2e_p50_ms_at_500"] = r["e2e_ms"]["p50"]
        keys["e2e_p99_ms_at_500"] = r["e2e_ms"]["p99"]
        if "kafka_floor_ms" in r:
            keys["kafka_floor_p50_ms_at_500"] = r["kafka_floor_ms"]["p50"]
            keys["e2e_p50_over_kafka_p50"] = round(
                r["e2e_ms"]["p50"] / r["kafka_floor_ms"]["p50"], 2
            )
        keys["cpu_ms_per_msg_at_500"] = r["cpu"]["cpu_ms_per_msg"]
    if low:
        r = low["result"]
        keys["e2e_p50_ms_at_100"] = r["e2e_ms"]["p50"]
        keys["cpu_ms_per_msg_at_100"] = r["cpu"]["cpu_ms_per_msg"]
        if "kafka_latency_floor_ms" in r:
            keys["kafka_latency_floor_p50_ms_at_100"] = r["kafka_latency_floor_ms"]["p50"]
            keys["e2e_p50_over_latency_floor_at_100"] = round(
                r["e2e_ms"]["p50"] / r["kafka_latency_floor_ms"]["p50"], 2
            )
    # The peer is built on the centrifuge library (Centrifugo's core); the key keeps its name.
    keys["centrifugo_p99_ms_at_500"] = peer["result"]["e2e_ms"]["p99"] if peer else math.nan
    if step:
        best = sustained(step["result"])
        keys["max_sustained_msgs_per_s"] = best["rate"] if best else 0.0
        if best:
            usage = best["cpu"]
            keys["cpu_ms_per_msg_at_max"] = usage["cpu_ms_per_msg"]
            keys["generator_cpu_share_at_max"] = round(
                usage["generator_cores"] / step["machine"]["cpus"], 3
            )
    if idle:
        keys["rss_kib_per_stream"] = idle["result"]["rss_kib_per_stream"]
    if history:
        at_500 = [lv for lv in history["result"]["levels"] if lv["rate"] == 500]
        if at_500:
            keys["history_page_p99_ms_at_500"] = at_500[0]["page_ms"]["p99"]
    if peer:
        keys["peer_e2e_p99_ms_at_500"] = peer["result"]["e2e_ms"]["p99"]
        keys["peer_cpu_ms_per_msg_at_500"] = peer["result"]["cpu"]["peer_cpu_ms_per_msg"]
    if revoked:
        keys["revocation_p99_ms"] = revoked["result"]["stream_ended_ms"]["p99"]
    if ws_idle:
        keys["ws_rss_kib_per_conn"] = ws_idle["result"]["rss_kib_per_conn"]
    if ws_e2e:
        keys["ws_e2e_p99_ms_at_200"] = ws_e2e["result"]["websocket_ms"]["p99"]
        keys["grpc_e2e_p99_ms_at_200_same_run"] = ws_e2e["result"]["grpc_ms"]["p99"]
        if "cpu" in ws_e2e["result"]:
            keys["ws_e2e_cpu_ms_per_msg_at_200"] = ws_e2e["result"]["cpu"]["cpu_ms_per_msg"]
    if group:
        keys["group1000_send_p99_ms"] = group["result"]["send_ms"]["p99"]
        keys["group1000_e2e_p99_ms"] = group["result"]["e2e_ms"]["p99"]
        keys["group1000_cpu_ms_per_msg"] = group["result"]["cpu"]["cpu_ms_per_msg"]
    if big_group:
        keys["group10000_e2e_p99_ms"] = big_group["result"]["e2e_ms"]["p99"]
        keys["group10000_cpu_ms_per_msg"] = big_group["result"]["cpu"]["cpu_ms_per_msg"]
    if with_receipts:
        keys["cpu_ms_per_msg_at_500_with_receipts"] = with_receipts["result"]["cpu"][
            "cpu_ms_per_msg"
        ]
        keys["e2e_p99_ms_at_500_with_receipts"] = with_receipts["result"]["e2e_ms"]["p99"]
    if death:
        keys["offline_after_server_death_max_s"] = death["result"]["summary_s"]["max"]
    keys |= cluster.summary_keys(results)
    restarts = load(results, "writer-restart")
    if restarts:
        keys["writer_writing_after_sigkill_max_s"] = restarts["result"]["writing_after_kill_s"][
            "max"
        ]
    return keys


def header(results: Path) -> list[str]:
    """The title, the summary lines, the machine and the targets."""
    e2e = load(results, "e2e-500")
    step = load(results, "step")
    idle = load(results, "idle")
    history = load(results, "history")
    peer = load(results, "peer-500")
    lines: list[str] = []
    keys = summary_keys(results)
    lines += ["# Benchmarks", ""]
    lines += [f"{key}: {value}" for key, value in keys.items()]
    lines += ["", "(`nan`: not measured; the sections below say why.)"]
    lines += [
        "",
        "Numbers from `bench/results/*.json`; regenerate this page with `python -m bench report`.",
        "",
    ]
    machine = next((r["machine"] for r in (e2e, step, idle, history, peer) if r), None)
    if machine:
        lines += [
            "## Machine",
            "",
            f"{machine['cpus']} cores ({machine['cpu']}), {machine['memory_gib']} GiB RAM, "
            f"Python {machine['python']}, Linux {machine['kernel']}. Everything ran on this one "
            "machine at once: Kafka, Cassandra, Redis, Jaeger, every service and the load generator.",
            "",
            "**CPU per message** is the whole machine's busy time (`elapsed * cores - delta(idle + "
            "iowait)` from `/proc/stat`) minus the load generator's own (its process and the "
            "benchmark's Python process), divided by the messages due in the same window: the "
            "measured part of the run (after its warm-up), from 1 s after its start to the last "
            "send (`bench/cpu.py`). Each process's share is its `utime + stime` over that window.",
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
    return lines
