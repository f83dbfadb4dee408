"""Turning bench/results/*.json into tables, plots and docs/benchmarks.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
}
#: What the step scenario counts as sustained.
SUSTAINED_P99_MS = 100.0


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


def _processes_table(usage: dict[str, Any]) -> list[str]:
    lines = [
        "| process | cores | ms of CPU per message |",
        "| --- | --- | --- |",
    ]
    for name, share in usage["processes"].items():
        lines.append(f"| {name} | {share['cores']} | {share['cpu_ms_per_msg']} |")
    lines.append(f"| (not attributed to a process) | {usage['unattributed_cores']} | |")
    return lines


def summary_keys(results: Path) -> dict[str, float]:
    e2e = _load(results, "e2e-500")
    step = _load(results, "step")
    idle = _load(results, "idle")
    history = _load(results, "history")
    peer = _load(results, "peer-500")
    revoked = _load(results, "revocation")
    ws_idle = _load(results, "ws-idle")
    ws_e2e = _load(results, "ws-e2e-200")
    group = _load(results, "group1000")
    with_receipts = _load(results, "e2e-500-receipts")
    death = _load(results, "presence-death")
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
    if group:
        keys["group1000_send_p99_ms"] = group["result"]["send_ms"]["p99"]
        keys["group1000_e2e_p99_ms"] = group["result"]["e2e_ms"]["p99"]
        keys["group1000_cpu_ms_per_msg"] = group["result"]["cpu"]["cpu_ms_per_msg"]
    if with_receipts:
        keys["cpu_ms_per_msg_at_500_with_receipts"] = with_receipts["result"]["cpu"][
            "cpu_ms_per_msg"
        ]
        keys["e2e_p99_ms_at_500_with_receipts"] = with_receipts["result"]["e2e_ms"]["p99"]
    if death:
        keys["offline_after_server_death_max_s"] = death["result"]["summary_s"]["max"]
    restarts = _load(results, "writer-restart")
    if restarts:
        keys["writer_writing_after_sigkill_max_s"] = restarts["result"]["writing_after_kill_s"][
            "max"
        ]
    return keys


def write(results: Path, docs: Path) -> None:
    e2e = _load(results, "e2e-500")
    step = _load(results, "step")
    idle = _load(results, "idle")
    history = _load(results, "history")
    peer = _load(results, "peer-500")
    keys = summary_keys(results)

    lines: list[str] = ["# Benchmarks", ""]
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
    if e2e:
        r = e2e["result"]
        plots = _plots(results, "e2e-500", e2e)
        lines += [
            "## (a) 500 messages/s end to end",
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
            _row("send → acknowledged", r["send_ack_ms"]),
            _row("send → event on each recipient stream", r["e2e_ms"]),
        ]
        if "kafka_floor_ms" in r:
            lines.append(_row("floor: raw Kafka produce → consume", r["kafka_floor_ms"]))
            lines += [
                "",
                "The floor is measured right after, in the same run, at the same rate: one "
                "Python producer and one consumer with the send path's and the fan-out's own "
                "Kafka client settings (linger 5 ms; fetches answered at 64 KiB or 10 ms), "
                "against the same broker.",
            ]
        usage = r["cpu"]
        lines += [
            "",
            f"CPU: **{usage['cpu_ms_per_msg']} ms per message**; the machine "
            f"{usage['machine_busy_cores']} cores busy of {machine['cpus'] if machine else 2}, "
            f"the generator {usage['generator_cores']} of them, over {usage['window_s']} s and "
            f"{usage['messages']} messages.",
            "",
            *_processes_table(usage),
            "",
        ]
        lines += [f"![{p}](../bench/results/{p})" for p in plots]
        lines.append("")
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
                *_processes_table(best["cpu"]),
                "",
            ]
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
    if idle:
        r = idle["result"]
        lines += [
            "## (d) Idle streams on one messaging server",
            "",
            f"Command: `{idle['command']}` ({idle['measured_at']}).",
            f"{r['ready']} of {r['streams']} streams open in {r['open_seconds']} s; messaging RSS "
            f"{r['rss_before_kib']} KiB before, {r['rss_after_kib']} KiB after: "
            f"**{r['rss_kib_per_stream']} KiB per stream**.",
            "",
        ]
    if history:
        lines += [
            "## (e) 50-message history pages",
            "",
            f"Command: `{history['command']}` ({history['measured_at']}). Pages asked for by "
            "the compiled generator straight at the history query service; latency from each "
            "page's due time.",
            "",
            "| what | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | samples | history-query "
            "cores | its CPU ms per page |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for level in history["result"]["levels"]:
            stats = level["page_ms"]
            query = level.get("cpu", {}).get("processes", {}).get("history-query", {})
            lines.append(
                f"| {level['rate']:g} pages/s (errors {level['errors']}) | {stats['p50']} | "
                f"{stats['p90']} | {stats['p99']} | {stats['p99_9']} | {stats['max']} | "
                f"{stats['count']} | {query.get('cores', '-')} | {query.get('cpu_ms_per_msg', '-')} |"
            )
        lines.append("")
    moves = _load(results, "moves")
    if moves:
        r = moves["result"]
        lines += [
            "## (f) Live partition moves",
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
    revoked = _load(results, "revocation")
    if revoked:
        r = revoked["result"]
        lines += [
            "## (g) Session revocation",
            "",
            f"Command: `{revoked['command']}` ({revoked['measured_at']}).",
            f"{r['sessions']} users each hold a gRPC stream; their sessions are then logged out "
            f"(`DELETE /v1/sessions/current`), {r['parallel']} at a time. Both times are from the "
            "moment the logout was sent. A logout is acknowledged only after every service "
            "(the BFF, both messaging servers, the history query service) applied it and ended "
            "the session's streams, so the stream normally ends first.",
            "",
            HEADER,
            _row("stream ended (UNAUTHENTICATED)", r["stream_ended_ms"]),
            _row("logout acknowledged", r["logout_acked_ms"]),
            "",
        ]
    ws_idle = _load(results, "ws-idle")
    ws_e2e = _load(results, "ws-e2e-200")
    if ws_idle or ws_e2e:
        lines += ["## (h) Browsers' streams through the BFF", ""]
    if ws_idle:
        r = ws_idle["result"]
        lines += [
            f"Command: `{ws_idle['command']}` ({ws_idle['measured_at']}). "
            f"{r['ready']} WebSockets held on the one BFF process, each past its hello and "
            f"caught up (so each also holds a gRPC stream to its messaging server): resident "
            f"memory {r['rss_before_kib']} KiB before, {r['rss_after_kib']} KiB after, "
            f"**{r['rss_kib_per_conn']} KiB per connection**; opened in {r['open_seconds']} s.",
            "",
        ]
    if ws_e2e:
        r = ws_e2e["result"]
        lines += [
            f"Command: `{ws_e2e['command']}` ({ws_e2e['measured_at']}). {r['users']} users in "
            "pairs, each holding a WebSocket (a browser) and a gRPC stream (a phone); one of "
            f"each pair sends over its WebSocket, {r['rate']:g} messages/s in total for "
            f"{r['duration']:g} s ({r['sent']} messages). Latency from each send's due time to "
            "its arrival on the recipient's WebSocket and, for the same messages, on the "
            f"recipient's gRPC stream. Missing: WebSocket {r['websocket_missing']}, gRPC "
            f"{r['grpc_missing']}.",
            "",
            HEADER,
            _row("sent over WebSocket → recipient's WebSocket", r["websocket_ms"]),
            _row("sent over WebSocket → recipient's gRPC stream", r["grpc_ms"]),
            "",
        ]
    group = _load(results, "group1000")
    if group:
        r = group["result"]
        usage = r["cpu"]
        lines += [
            "## (i) A 1,000-member group",
            "",
            f"Command: `{group['command']}` ({group['measured_at']}). {r['members']} users each "
            "hold a gRPC stream; the first creates a group of all of them and sends "
            f"{r['messages']} messages at {r['rate']:g}/s, each one delivery record per member "
            f"({r['deliveries']} deliveries; lost {r['lost_deliveries']}, duplicated "
            f"{r['duplicate_deliveries']}). Send: until Kafka holds every copy. End to end: "
            "from the send's start until each member's stream showed it. CPU: the machine's "
            "busy time while sending, minus the generator's (it reads all the streams), per "
            f"message: **{usage['cpu_ms_per_msg']} ms** ({usage['system_cores']} cores; the "
            "idle stack's share of that is about 0.15 cores). Services ran with "
            "`CHAT_TRACE_SAMPLE_RATIO=0.01`; with every send traced (the `./dev up` default) "
            "the same run measured 374 ms per message, the messaging servers' share doubled.",
            "",
            HEADER,
            _row("send (Kafka holds all copies)", r["send_ms"]),
            _row("end to end, every member", r["e2e_ms"]),
            "",
            *_processes_table(usage),
            "",
        ]
    with_receipts = _load(results, "e2e-500-receipts")
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
            *_processes_table(on["cpu"]),
            "",
        ]
    lines += _writer_restarts(results)
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
    extra = docs.with_name("benchmarks-notes.md")
    if extra.is_file():
        lines += [extra.read_text().strip(), ""]
    docs.write_text("\n".join(lines))
    (results / "summary.md").write_text("\n".join(lines).replace("../bench/results/", ""))
    print(f"wrote {docs} and {results / 'summary.md'}")


def _writer_restarts(results: Path) -> list[str]:
    static, dynamic = _load(results, "writer-restart"), _load(results, "writer-restart-dynamic")
    if not static:
        return []
    lines = [
        "## (k) The history writer killed and started again",
        "",
        f"Command: `{static['command']}` ({static['measured_at']})"
        + (
            f", then `{dynamic['command']}` ({dynamic['measured_at']}) in the same session"
            if dynamic
            else ""
        )
        + f": messages sent at {static['result']['rate']:g}/s meanwhile; each round SIGKILLs "
        "the writer and starts it again (`infra/apps.py`), and times from the kill until the "
        "process is ready and until it has written again (its "
        "`history_messages_written_total` above 0). As a static group member the restarted "
        "writer gets its partitions back at once; without its member id it waits for the "
        "group to rebalance, which waits for the dead member's 10 s session to time out.",
        "",
        "| writer | rounds | ready after, s | writing again after, s (each round) | max s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, run in (("static member (as run)", static), ("no member id", dynamic)):
        if not run:
            continue
        rounds = run["result"]["rounds"]
        lines.append(
            f"| {label} | {len(rounds)} | {', '.join(str(r['ready_s']) for r in rounds)} | "
            f"{', '.join(str(r['writing_s']) for r in rounds)} | "
            f"{run['result']['writing_after_kill_s']['max']} |"
        )
    return [*lines, ""]
