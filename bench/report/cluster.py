"""The cluster's sections: what replication costs per message (the cluster and the single node
at 500/s in one session, and the cluster's highest sustained rate), and the storage faults
under load (``tests/cluster``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report.common import HEADER, SUSTAINED_P99_MS, load, processes_table, row, sustained

CLUSTER_E2E = "cluster-e2e-500"
SINGLE_E2E = "single-e2e-500-same-session"
CLUSTER_STEP = "cluster-step"
FAULTS = "cluster-faults"
#: ``bench e2e`` on the cluster with three messaging servers and with m3 stopped, at the
#: issue's 500/s and at 200/s (what this box carries without saturating).
SERVERS_E2E = "cluster-e2e-{rate}-{servers}-servers"
SERVERS_RATES = (500, 200)
#: ``bench e2e`` at 100/s on the cluster with TLS, before it, and with it again (one session),
#: and ``bench tls``: one gRPC hop with and without TLS.
TLS_E2E = ("cluster-e2e-100-tls-first", "cluster-e2e-100-plaintext", "cluster-e2e-100-tls-second")
TLS_HOP = "tls-cost"
#: ``bench partitions``: the cluster grown in steps, idle at each count.
PARTITIONS = "partitions"


def summary_keys(results: Path) -> dict[str, float]:
    keys: dict[str, float] = {}
    on_cluster, on_single = load(results, CLUSTER_E2E), load(results, SINGLE_E2E)
    if on_cluster:
        keys["cluster_cpu_ms_per_msg_at_500"] = on_cluster["result"]["cpu"]["cpu_ms_per_msg"]
    if on_single:
        keys["single_cpu_ms_per_msg_at_500_same_session"] = on_single["result"]["cpu"][
            "cpu_ms_per_msg"
        ]
    step = load(results, CLUSTER_STEP)
    if step:
        best = sustained(step["result"])
        keys["cluster_max_sustained_msgs_per_s"] = best["rate"] if best else 0.0
    for rate in SERVERS_RATES:
        for servers in (2, 3):
            run = load(results, SERVERS_E2E.format(rate=rate, servers=servers))
            if run:
                keys[f"cpu_ms_per_msg_at_{rate}_with_{servers}_servers"] = run["result"]["cpu"][
                    "cpu_ms_per_msg"
                ]
    hop = load(results, TLS_HOP)
    if hop:
        keys["tls_added_cpu_us_per_grpc_call"] = hop["result"]["added_per_unary_call_cpu_us"]
        keys["tls_added_cpu_us_per_streamed_event"] = hop["result"][
            "added_per_streamed_event_cpu_us"
        ]
    faults = load(results, FAULTS)
    if faults:
        storage, service = _tiers(faults["result"]["faults"])
        if storage:
            keys["storage_faults_acked_lost"] = sum(f["lost"] for f in storage)
            keys["storage_faults_duplicated"] = sum(f["duplicated"] for f in storage)
            keys["storage_fault_longest_send_error_window_s"] = max(
                f["error_window_s"] for f in storage
            )
        if service:
            keys["service_faults_acked_lost"] = sum(f["lost"] for f in service)
            keys["service_faults_duplicated"] = sum(f["duplicated"] for f in service)
            for f in service:
                if f["fault"].startswith(MESSAGING_KILLED):
                    keys["failover_stream_resume_p99_s"] = f.get(
                        "resumed_p99_s", f["stream_pause_p99_s"]
                    )
                if f["fault"].startswith(ROLLING_RESTART):
                    keys["rolling_restart_client_errors"] = f["refused"]
    return keys


#: How the fault of a messaging server SIGKILLed and not restarted is named.
MESSAGING_KILLED = "messaging: SIGKILL"
ROLLING_RESTART = "rolling restart"


def _tiers(found: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Storage faults and faults of our own processes (runs before the latter say storage)."""
    storage = [f for f in found if f.get("tier", "storage") == "storage"]
    return storage, [f for f in found if f.get("tier") == "service"]


def cost(results: Path) -> list[str]:
    """What replication costs: the same load on the cluster and on one node."""
    runs = [(name, load(results, name)) for name in (CLUSTER_E2E, SINGLE_E2E)]
    found = [(name, run) for name, run in runs if run]
    if not found:
        return []
    lines = [
        "## What replication costs",
        "",
        "`bench e2e` at 500 messages/s, first on the cluster (`./dev up --cluster`: three "
        "brokers, three Cassandra nodes, Redis with two replicas; every write on three "
        "replicas, acknowledged by two), then on the single-node stack (`./dev up`), in one "
        "session on one machine.",
        "",
    ]
    for name, run in found:
        r = run["result"]
        usage = r["cpu"]
        where = "The cluster" if name == CLUSTER_E2E else "The single node"
        lines += [
            f"### {where}",
            "",
            f"Command: `{run['command']}` ({run['measured_at']}). Acknowledged {r['acked']} of "
            f"{r['attempted']}; lost deliveries {r['lost_deliveries']}, duplicate deliveries "
            f"{r['duplicate_deliveries']}, missing in history {r.get('persisted_missing', '-')}.",
            "",
            HEADER,
            row("send → acknowledged", r["send_ack_ms"]),
            row("send → event on each recipient stream", r["e2e_ms"]),
            "",
            f"CPU: **{usage['cpu_ms_per_msg']} ms per message**; the machine "
            f"{usage['machine_busy_cores']} cores busy, the generator {usage['generator_cores']}"
            f" of them, over {usage['window_s']} s and {usage['messages']} messages.",
            "",
            *processes_table(usage),
            "",
        ]
    step = load(results, CLUSTER_STEP)
    if step:
        best = sustained(step["result"])
        lines += [
            "### The cluster's highest sustained rate",
            "",
            f"Command: `{step['command']}` ({step['measured_at']}).",
            "",
            "| rate/s | acked/s | e2e p50 ms | e2e p99 ms | lost | dup | CPU ms/msg | busy cores |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in step["result"]["steps"]:
            lines.append(
                f"| {s['rate']:g} | {s['acked_per_s']} | {s['e2e_ms']['p50']} | "
                f"{s['e2e_ms']['p99']} | {s['lost_deliveries']} | {s['duplicate_deliveries']} | "
                f"{s['cpu']['cpu_ms_per_msg']} | {s['cpu']['machine_busy_cores']} |"
            )
        lines += [
            "",
            f"Highest rate sustained (p99 ≤ {SUSTAINED_P99_MS:g} ms, nothing lost or "
            f"duplicated): {best['rate']:g}/s."
            if best
            else "No rate was sustained.",
            "",
        ]
    return lines


def servers(results: Path) -> list[str]:
    """CPU per message with two and three messaging servers at one load (docs/capacity.md's
    check: it should stay flat as servers are added)."""
    runs = [
        (n, load(results, SERVERS_E2E.format(rate=rate, servers=n)))
        for rate in SERVERS_RATES
        for n in (3, 2)
    ]
    found = [(n, run) for n, run in runs if run]
    if not found:
        return []
    lines = [
        "### Two and three messaging servers at one load",
        "",
        "`bench e2e` on the cluster with its three messaging servers, and after `m3` was "
        "stopped with SIGTERM (its partitions moved to `m1` and `m2`), in one session: at the "
        "issue's 500 messages/s, which saturates this box (a run that acknowledges only part "
        "of its messages spends CPU on refused ones, so its CPU per message says little), and "
        "at 200/s, which every run acknowledged in full with the box still fully busy.",
        "",
        "| messaging servers | command | acked | e2e p50 ms | e2e p99 ms | CPU ms/msg | busy cores |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, run in found:
        r = run["result"]
        lines.append(
            f"| {n} | `{run['command']}` ({run['measured_at']}) | {r['acked']} of "
            f"{r['attempted']} | {r['e2e_ms']['p50']} | {r['e2e_ms']['p99']} | "
            f"{r['cpu']['cpu_ms_per_msg']} | {r['cpu']['machine_busy_cores']} |"
        )
    return [*lines, ""]


def tls(results: Path) -> list[str]:
    """What TLS on the client ports and the gRPC hops costs per message: one hop measured
    apart, and the cluster end to end with and without it."""
    hop = load(results, TLS_HOP)
    runs = [(name, load(results, name)) for name in TLS_E2E]
    found = [(name, run) for name, run in runs if run]
    if not hop and not found:
        return []
    lines = ["### TLS", ""]
    if hop:
        r = hop["result"]
        plain, secured = r["plaintext"], r["tls"]
        lines += [
            f"One gRPC hop, client and server in one process on loopback: `{hop['command']}` "
            f"({hop['measured_at']}; {r['rounds']} rounds alternating plaintext and TLS, the "
            f"median of each; {r['calls']} unary calls and {r['events']} streamed events of "
            "200 bytes a round).",
            "",
            "| | plaintext µs | TLS µs | TLS adds µs |",
            "| --- | --- | --- | --- |",
            f"| CPU per unary call (both ends) | {plain['unary_call_cpu_us']} | "
            f"{secured['unary_call_cpu_us']} | {r['added_per_unary_call_cpu_us']} |",
            f"| CPU per streamed event (both ends) | {plain['streamed_event_cpu_us']} | "
            f"{secured['streamed_event_cpu_us']} | {r['added_per_streamed_event_cpu_us']} |",
            "",
            "A direct message crosses TLS twice on our side: the Send (one unary call) and its "
            "event on the recipient's stream, plus one more event for each further device or "
            "member stream; a browser's message adds the balancer's TLS (HAProxy, C) and the "
            "BFF's call to the messaging server.",
            "",
        ]
    if found:
        lines += [
            "The cluster end to end: `bench e2e` at 100 messages/s with TLS, then with the code "
            "before TLS, then with TLS again, in one session (so neither side has the JVMs "
            "warmer). The box is fully busy at any rate on the cluster (three brokers, three "
            "Cassandra nodes and every process twice on two cores), so the whole machine's CPU "
            "per message cannot show a cost this small; the messaging servers' share is where "
            "it would land.",
            "",
            "| run | command | acked | e2e p50 ms | e2e p99 ms | CPU ms/msg | busy cores |"
            " messaging servers, cores |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, run in found:
            r = run["result"]
            usage = r["cpu"]
            messaging = sum(
                p["cores"] for n, p in usage["processes"].items() if n.startswith("messaging")
            )
            lines.append(
                f"| {name.removeprefix('cluster-e2e-100-')} | `{run['command']}` "
                f"({run['measured_at']}) | {r['acked']} of {r['attempted']} | "
                f"{r['e2e_ms']['p50']} | {r['e2e_ms']['p99']} | {usage['cpu_ms_per_msg']} | "
                f"{usage['machine_busy_cores']} | {messaging:.3f} |"
            )
        lines.append("")
    return lines


def faults(results: Path) -> list[str]:
    """The faults under load, from the last full run of the cluster suite: storage, then our
    own processes."""
    run = load(results, FAULTS)
    if not run:
        return []
    storage, service = _tiers(run["result"]["faults"])
    return _storage_faults(run, storage) + _service_faults(run, service)


def _service_faults(run: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "## Our own processes killed or frozen under load",
        "",
        f"Run: `{run['command']}` ({run['measured_at']}), `tests/cluster/test_service_faults.py`"
        f" ({_machine(run)}), with the load and the accounting of the storage faults. Clients "
        "do what `clients/stream.py` does: resume from their cursor, follow redirects, ask the "
        "BFF where to go after UNAVAILABLE, and ping every 10 s. The partition leases add no "
        "work per message beyond one lease check per fetched batch (not measured apart); each "
        "server runs one Redis script a second.",
        "",
        "- *streams live again*: of the streams the fault broke (*broken*), the time from the "
        "fault until each said `caught_up` again on a server that feeds it: p50, p99, max. "
        "For the rolling restart this counts from the start of the whole restart: the "
        "messaging servers come after the config, history and notifier processes.",
        "- *stream pause p99*: over the streams of the users placed on the server the fault "
        "hit, each one's longest wait for a message already acknowledged (a sender's message "
        "held by the settling bound counts from its acknowledgement).",
        "",
        "| fault | fault s | acked | refused attempts | send error window s | longest to ack s "
        "| broken | live again p50 s | p99 s | max s | stream pause p99 s | lost | duplicated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in found:
        lines.append(
            f"| {f['fault']} | {f['seconds']} | {f['acked']} | {f['refused']} | "
            f"{f['error_window_s']} | {f['longest_to_ack_s']} | {f.get('streams_resumed', '-')} "
            f"| {f.get('resumed_p50_s', '-')} | {f.get('resumed_p99_s', '-')} | "
            f"{f.get('resumed_max_s', '-')} | {f['stream_pause_p99_s']} | {f['lost']} | "
            f"{f['duplicated']} |"
        )
    lines.append("")
    return lines


def _storage_faults(run: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "## Storage faults under load",
        "",
        f"Run: `{run['command']}` ({run['measured_at']}), `tests/cluster/test_storage_faults.py`"
        f" ({_machine(run)}). "
        "Twelve clients send through the BFF (ten in direct chats, two in groups of three "
        "readers), each retrying a message with its client_message_id until it is "
        "acknowledged, at up to 100 messages/s together; every user holds a live gRPC stream. "
        "Each fault is made 5 s into the load and healed after its length; the load goes on "
        "until every service is ready again and 5 s more. Then every acknowledged message is "
        "looked for on every member's stream, in history and in each reader's unread count.",
        "",
        "- *fault*: from the fault to the end of its healing (a restarted node answering).",
        "- *send error window*: from the first refused or failed send attempt to the end of the "
        "last one.",
        "- *longest send*: the longest single attempt; *longest to ack*: the longest from a "
        "message's first attempt to its acknowledgement, retries included.",
        "- *stream pause*: the longest a message took to reach a member's stream after it was "
        "acknowledged: how long a stream stood still with messages waiting for it.",
        "",
        "| fault | fault s | acked | msgs/s | refused attempts | send error window s | longest "
        "send s | longest to ack s | stream pause s | lost | duplicated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in found:
        lines.append(
            f"| {f['fault']} | {f['seconds']} | {f['acked']} | {f['rate']} | {f['refused']} | "
            f"{f['error_window_s']} | {f['longest_send_s']} | {f['longest_to_ack_s']} | "
            f"{f['longest_stream_pause_s']} | {f['lost']} | {f['duplicated']} |"
        )
    lines.append("")
    return lines


def _machine(run: dict[str, Any]) -> str:
    """The machine a run was made on (the processor changes from day to day)."""
    found = run.get("machine") or {}
    return f"{found.get('cpus', '?')} cores, {found.get('cpu', 'processor not recorded')}"


def partitions(results: Path) -> list[str]:
    """What more partitions cost the idle cluster, and what adding them costs."""
    run = load(results, PARTITIONS)
    if not run:
        return []
    r = run["result"]
    lines = [
        "### Partitions",
        "",
        f"`{run['command']}` ({run['measured_at']}): the cluster grown with `./dev admin grow` "
        f"in steps, then {r['idle_seconds']:g} s idle at each count (every stack process's "
        "CPU and resident memory), then `./dev restart messaging-m3`, which hands its "
        "partitions to the other two servers and takes them back.",
        "",
        "| partitions | growth took s | sends held ms | stack cores idle | Kafka brokers | "
        "messaging servers | history writers | notifiers | stack RSS MiB | Kafka RSS MiB | "
        "messaging RSS MiB | m3 restart s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level in r["levels"]:
        idle, growth = level["idle"], level["growth"] or {}
        cores, rss = idle["cores_by_kind"], idle["rss_mib_by_kind"]
        lines.append(
            f"| {level['partitions']} | {growth.get('seconds', 'start')} | "
            f"{growth.get('sends_held_ms', '-')} | {idle['stack_cores']} | "
            f"{cores.get('kafka', 0):.3f} | {cores.get('messaging', 0):.3f} | "
            f"{cores.get('history-writer', 0):.3f} | {cores.get('notifier', 0):.3f} | "
            f"{idle['stack_rss_mib']} | {rss.get('kafka', 0)} | {rss.get('messaging', 0)} | "
            f"{level['restart_m3_s']} |"
        )
    return [*lines, ""]
