"""The send path's sections: end to end at 500/s, the rate stepped up, the peer, receipts on,
and the pipeline as it was."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report.common import (
    HEADER,
    SUSTAINED_P99_MS,
    load,
    plots,
    processes_table,
    row,
    sustained,
)


def end_to_end(results: Path) -> list[str]:
    """(a) 500 and 100 messages/s end to end."""
    lines: list[str] = []
    for name in ("e2e-500", "e2e-100"):
        lines += _end_to_end(results, name)
    return lines


def _end_to_end(results: Path, name: str) -> list[str]:
    e2e = load(results, name)
    lines: list[str] = []
    if e2e:
        machine = e2e["machine"]
        r = e2e["result"]
        made = plots(results, name, e2e)
        lines += [
            f"## (a) {r['rate']:g} messages/s end to end",
            "",
            f"Command: `{e2e['command']}` ({e2e['measured_at']}).",
            f"{r['users']} users holding streams, {r['senders']} senders, {r['body_bytes']}-byte "
            f"bodies, {r['duration_s']:g} s measured after {r.get('warmup_s', 0):g} s of warm-up "
            "(whose sends count for loss and duplicates, not for latency and CPU), sent by the "
            "compiled generator (`bench/loadgen`). "
            f"Acknowledged {r['acked']} of {r['attempted']}; lost deliveries "
            f"{r['lost_deliveries']}, duplicate deliveries {r['duplicate_deliveries']}, missing in "
            f"history {r['persisted_missing']}, duplicated in history {r['persisted_duplicates']}.",
            "",
            HEADER,
            row("send → acknowledged", r["send_ack_ms"]),
            row("send → event on each recipient stream", r["e2e_ms"]),
        ]
        if "kafka_floor_ms" in r:
            lines.append(row("floor: raw Kafka, our batching", r["kafka_floor_ms"]))
            if "kafka_latency_floor_ms" in r:
                lines.append(row("floor: raw Kafka, no batching", r["kafka_latency_floor_ms"]))
            lines += [
                "",
                "The floors are measured right after, in the same run, at the same rate: one "
                "Python producer and one consumer against the same broker, first with the "
                "Kafka client settings the send path and the fan-out use at full load (linger "
                "5 ms; fetches answered at 64 KiB or 10 ms), then with none of that batching "
                "(linger 0; fetches answered at 1 byte or 1 ms): Kafka as fast as it goes.",
            ]
        usage = r["cpu"]
        lines += [
            "",
            f"CPU: **{usage['cpu_ms_per_msg']} ms per message**; the machine "
            f"{usage['machine_busy_cores']} cores busy of {machine['cpus'] if machine else 2}, "
            f"the generator {usage['generator_cores']} of them, over {usage['window_s']} s and "
            f"{usage['messages']} messages.",
            "",
            *processes_table(usage),
            "",
        ]
        lines += [f"![{p}](../bench/results/{p})" for p in made]
        lines.append("")
    return lines


def stepped(results: Path) -> list[str]:
    """(b) The rate stepped up until p99 passes 100 ms or anything is lost."""
    step = load(results, "step")
    lines: list[str] = []
    if step:
        best = sustained(step["result"])
        lines += [
            "## (b) Rate stepped up",
            "",
            f"Command: `{step['command']}` ({step['measured_at']}).",
            "",
            "| rate/s | acked/s | e2e p50 ms | e2e p99 ms | ack p99 ms | lost | dup | missing in "
            "history | CPU ms/msg | machine busy cores | generator cores |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in step["result"]["steps"]:
            lines.append(
                f"| {s['rate']:g} | {s['acked_per_s']} | {s['e2e_ms']['p50']} | "
                f"{s['e2e_ms']['p99']} | {s['send_ack_ms']['p99']} | {s['lost_deliveries']} | "
                f"{s['duplicate_deliveries']} | {s.get('persisted_missing', '-')} | "
                f"{s['cpu']['cpu_ms_per_msg']} | {s['cpu']['machine_busy_cores']} | "
                f"{s['cpu']['generator_cores']} |"
            )
        lines += [
            "",
            f"Highest rate sustained (p99 ≤ {SUSTAINED_P99_MS:g} ms, nothing lost or duplicated): "
            f"{best['rate']:g}/s."
            if best
            else "No rate was sustained.",
            "",
        ]
        if best:
            lines += [
                f"Each process at {best['rate']:g}/s:",
                "",
                *processes_table(best["cpu"]),
                "",
            ]
    return lines


def peer(results: Path) -> list[str]:
    """(c) The peer server under the same load."""
    peer = load(results, "peer-500")
    e2e = load(results, "e2e-500")
    lines: list[str] = []
    if peer:
        r = peer["result"]
        ours = e2e["result"] if e2e else None
        lines += [
            "## (c) The peer, side by side",
            "",
            f"Command: `{peer['command']}` ({peer['measured_at']}).",
            "A small Go server on `github.com/centrifugal/centrifuge` v0.40.1 (the library "
            "Centrifugo is built on) with its in-memory broker (`bench/loadgen/cmd/peer`), "
            "driven by the same generator with the same users, senders, rate and body size over "
            "WebSocket (centrifuge's protobuf protocol): each user's connection is subscribed to "
            "its own channel, and a send is an RPC that publishes the message to both members' "
            "channels, as our server produces one copy per member. Its CPU is the machine's "
            "busy time beyond the generator and our (idle) stack's processes.",
            "",
            "| | e2e p50 ms | e2e p99 ms | ack p99 ms | CPU ms/msg |",
            "| --- | --- | --- | --- | --- |",
            f"| peer (centrifuge, memory) | {r['e2e_ms']['p50']} | {r['e2e_ms']['p99']} | "
            f"{r['send_ack_ms']['p99']} | {r['cpu']['peer_cpu_ms_per_msg']} |",
        ]
        if ours:
            lines.append(
                f"| ours (Kafka, Cassandra, Redis, 2 messaging servers) | {ours['e2e_ms']['p50']} "
                f"| {ours['e2e_ms']['p99']} | {ours['send_ack_ms']['p99']} | "
                f"{ours['cpu']['cpu_ms_per_msg']} |"
            )
        lines.append("")
    return lines


def receipts(results: Path) -> list[str]:
    """(j) Receipts and typing on, beside the same load without."""
    e2e = load(results, "e2e-500")
    lines: list[str] = []
    with_receipts = load(results, "e2e-500-receipts")
    if with_receipts and e2e:
        on, off = with_receipts["result"], e2e["result"]
        window = on["duration_s"] + on["warmup_s"]
        lines += [
            "## (j) Receipts and typing on",
            "",
            f"Command: `{with_receipts['command']}` ({with_receipts['measured_at']}), beside "
            f"`{e2e['command']}` ({e2e['measured_at']}) in the same session: the same load, "
            "and every stream's holder marks what it received delivered and read (MarkDelivered"
            " and MarkRead for the newest id, once a second per chat, as the clients do) while "
            "each sender says it is typing (SetTyping, once per 3 s per chat). Marks sent: "
            f"{on['marks_sent']} ({on['marks_sent'] / window:.0f}/s), typing calls "
            f"{on['typing_sent']}. Each mark is one record on the reader's partition, and the "
            "others are told once a second per reader and chat (one more record per other "
            "member); typing goes over Redis only. Lost "
            f"{on['lost_deliveries']}, duplicated {on['duplicate_deliveries']}.",
            "",
            "| run | CPU ms/msg | machine busy cores | e2e p50 ms | e2e p99 ms |",
            "| --- | --- | --- | --- | --- |",
            f"| without | {off['cpu']['cpu_ms_per_msg']} | {off['cpu']['machine_busy_cores']} | "
            f"{off['e2e_ms']['p50']} | {off['e2e_ms']['p99']} |",
            f"| receipts and typing on | {on['cpu']['cpu_ms_per_msg']} | "
            f"{on['cpu']['machine_busy_cores']} | {on['e2e_ms']['p50']} | {on['e2e_ms']['p99']} |",
            "",
            *processes_table(on["cpu"]),
            "",
        ]
    return lines


def before(results: Path) -> list[str]:
    """The pipeline as it was before the changes the notes describe."""
    lines: list[str] = []
    before = (
        sorted((results / "before").glob("e2e-*.json")) if (results / "before").is_dir() else []
    )
    if before:
        lines += [
            "## Before: the pipeline as it was",
            "",
            "Measured at the start of the same session with the same generator, before the "
            "changes described below (`bench/results/before/`).",
            "",
            "| rate/s | e2e p50 ms | e2e p99 ms | CPU ms/msg | machine busy cores |",
            "| --- | --- | --- | --- | --- |",
        ]
        for path in sorted(
            before, key=lambda p: float(json.loads(p.read_text())["result"]["rate"])
        ):
            r = json.loads(path.read_text())["result"]
            lines.append(
                f"| {r['rate']:g} | {r['e2e_ms']['p50']} | {r['e2e_ms']['p99']} | "
                f"{r['cpu']['cpu_ms_per_msg']} | {r['cpu']['machine_busy_cores']} |"
            )
        lines.append("")
    return lines
