"""History's sections: history pages, search, and the writer killed and started again."""

from __future__ import annotations

from pathlib import Path

from bench.report.common import HEADER, load, row


def pages(results: Path) -> list[str]:
    """(e) 50-message history pages."""
    history = load(results, "history")
    lines: list[str] = []
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
    return lines


def search(results: Path) -> list[str]:
    """(e) Search within a chat of many messages."""
    found = load(results, "search")
    if not found:
        return []
    run = found["result"]
    lines = [
        f"## (e) Search within a chat of {run['messages']:,} messages",
        "",
        f"Command: `{found['command']}` ({found['measured_at']}). Searches one after another "
        f"through the BFF (`GET /v1/chats/{{id}}/search`, first page of {run['limit']}). The "
        "chat is written through the history writer's own code; `common`, `frequent` and "
        "`rare` are planted in 10%, 1% and 0.01% of its messages, `absent` in none.",
        "",
    ]
    for chat in run["chats"]:
        lines += [
            f"Messages over {chat['days']:g} days (written in {chat['fill_s']} s; "
            f"planted: {chat['planted']}):",
            "",
            HEADER,
        ]
        for query in chat["searches"]:
            label = f"`{query['query']}` ({query['found_on_first_page']} on the page)"
            lines.append(row(label, query["ms"]))
        lines.append("")
    return lines


def writer_restarts(results: Path) -> list[str]:
    """(k) The history writer killed and started again."""
    static, dynamic = load(results, "writer-restart"), load(results, "writer-restart-dynamic")
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
