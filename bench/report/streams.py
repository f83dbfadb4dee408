"""Live streams' sections: idle streams, partition moves, revocation, browsers' streams."""

from __future__ import annotations

from pathlib import Path

from bench.report.common import HEADER, load, row


def idle(results: Path) -> list[str]:
    """(d) Idle streams on one messaging server."""
    idle = load(results, "idle")
    lines: list[str] = []
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
    return lines


def moves(results: Path) -> list[str]:
    """(f) Live partition moves."""
    lines: list[str] = []
    moves = load(results, "moves")
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
                row(
                    f"round {number + 1}: redirect received ({round_['moved_streams']} streams)",
                    round_["redirect_ms"],
                )
            )
            lines.append(row(f"round {number + 1}: resumed on the new owner", round_["resumed_ms"]))
        lines.append("")
    return lines


def revocation(results: Path) -> list[str]:
    """(g) Session revocation."""
    lines: list[str] = []
    revoked = load(results, "revocation")
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
            row("stream ended (UNAUTHENTICATED)", r["stream_ended_ms"]),
            row("logout acknowledged", r["logout_acked_ms"]),
            "",
        ]
    return lines


def browsers(results: Path) -> list[str]:
    """(h) Browsers' streams through the BFF."""
    lines: list[str] = []
    ws_idle = load(results, "ws-idle")
    ws_e2e = load(results, "ws-e2e-200")
    if ws_idle or ws_e2e:
        lines += ["## (h) Browsers' streams through the BFF", ""]
    if ws_idle:
        r = ws_idle["result"]
        lines += [
            f"Command: `{ws_idle['command']}` ({ws_idle['measured_at']}). "
            f"{r['ready']} WebSockets held on the one BFF process, each past its hello and "
            f"caught up (each a stream on the BFF's relay to its messaging server): resident "
            f"memory {r['rss_before_kib']} KiB before, {r['rss_after_kib']} KiB after, "
            f"**{r['rss_kib_per_conn']} KiB per connection**; opened in {r['open_seconds']} s.",
            "",
        ]
        if "messaging_rss_kib_per_conn" in r:
            lines += [
                "The messaging servers hold each browser's stream too: together "
                f"{r['messaging_rss_kib_per_conn']} KiB more per connection.",
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
            row("sent over WebSocket → recipient's WebSocket", r["websocket_ms"]),
            row("sent over WebSocket → recipient's gRPC stream", r["grpc_ms"]),
            "",
        ]
        if "cpu" in r:
            usage = r["cpu"]
            shares = ", ".join(
                f"{name} {p['cpu_ms_per_msg']}"
                for name, p in usage["processes"].items()
                if name != "generator" and p["cpu_ms_per_msg"]
            )
            lines += [
                f"CPU, the machine less the benchmark's own process (the browsers, phones and "
                f"senders), over {usage['window_s']} s and {usage['messages']} messages: "
                f"**{usage['cpu_ms_per_msg']} ms per message** (each to a WebSocket and a gRPC "
                f"stream); by process, ms per message: {shares}.",
                "",
            ]
    return lines
