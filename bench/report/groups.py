"""The groups' section: a message to a 1,000-member group, and to a 10,000-member one with a
tenth of its members online."""

from __future__ import annotations

from pathlib import Path

from bench.report.common import HEADER, load, processes_table, row


def large_group(results: Path) -> list[str]:
    """(i) Large groups."""
    lines: list[str] = []
    for name in ("group1000", "group10000"):
        group = load(results, name)
        if not group:
            continue
        r = group["result"]
        usage = r["cpu"]
        online = r.get("online", r["members"])
        lines += [
            f"## (i) A {r['members']:,}-member group, {online:,} of them online",
            "",
            f"Command: `{group['command']}` ({group['measured_at']}). {online} of the "
            f"{r['members']} members hold a gRPC stream; the first creates the group and sends "
            f"{r['messages']} messages at {r['rate']:g}/s, each one record per partition that "
            f"holds members ({r['deliveries']} deliveries to streams; lost "
            f"{r['lost_deliveries']}, duplicated {r['duplicate_deliveries']}). Send: until "
            "Kafka holds every record. End to end: from the send's start until each online "
            "member's stream showed it. CPU: the machine's busy time while sending, minus the "
            "generator's (it reads all the streams), per message: "
            f"**{usage['cpu_ms_per_msg']} ms** ({usage['system_cores']} cores, the idle "
            "stack's share included)"
            + (
                f"; less what the stack spent idle with the same streams held just before "
                f"({usage['idle_system_cores']} cores), **{usage['marginal_cpu_ms_per_msg']} "
                "ms** per message."
                if "marginal_cpu_ms_per_msg" in usage
                else "."
            ),
            "",
            HEADER,
            row("send (Kafka holds all records)", r["send_ms"]),
            row("end to end, every online member", r["e2e_ms"]),
            "",
            *processes_table(usage),
            "",
        ]
    return lines
