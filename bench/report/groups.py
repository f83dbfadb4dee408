"""The groups' section: a message to a 1,000-member group."""

from __future__ import annotations

from pathlib import Path

from bench.report.common import HEADER, load, processes_table, row


def large_group(results: Path) -> list[str]:
    """(i) A 1,000-member group."""
    lines: list[str] = []
    group = load(results, "group1000")
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
            row("send (Kafka holds all copies)", r["send_ms"]),
            row("end to end, every member", r["e2e_ms"]),
            "",
            *processes_table(usage),
            "",
        ]
    return lines
