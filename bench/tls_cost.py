"""What TLS adds to one gRPC hop: the CPU of a unary call and of one streamed event, over a
plaintext channel and over TLS (the cluster's certificates, ``infra/tls.py``), client and
server in this one process on loopback.

The end-to-end benchmark cannot show it on this box: the cluster keeps both cores busy at any
rate, so the whole machine's CPU per message is the same with TLS and without
(docs/benchmarks.md, "TLS"). Rounds alternate plaintext and TLS, and each figure is the median
of its rounds, so a busy neighbour costs both alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from chatlib import channels
from chatlib.settings import Tls
from infra import tls
from infra.layout import Layout

#: An event's size on a stream, about a short message's (bytes).
EVENT_BYTES = 200
SERVICE = "bench.Tls"


async def _answer(request: bytes, context: object) -> bytes:
    return request


async def _events(request: bytes, context: object) -> Any:
    event = b"x" * EVENT_BYTES
    for _ in range(int(request)):
        yield event


def _server() -> grpc.aio.Server:
    server = grpc.aio.server(options=channels.SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Call": grpc.unary_unary_rpc_method_handler(
                        _answer, request_deserializer=bytes, response_serializer=bytes
                    ),
                    "Events": grpc.unary_stream_rpc_method_handler(
                        _events, request_deserializer=bytes, response_serializer=bytes
                    ),
                },
            ),
        )
    )
    return server


async def _round(secured: Tls, calls: int, events: int) -> tuple[float, float]:
    """Microseconds of this process's CPU per unary call and per streamed event."""
    server = _server()
    port = channels.listen(server, "127.0.0.1:0", secured)
    await server.start()
    channel = channels.to_service(f"127.0.0.1:{port}", Tls(ca=secured.ca))
    try:
        call = channel.unary_unary(
            f"/{SERVICE}/Call", request_serializer=bytes, response_deserializer=bytes
        )
        stream = channel.unary_stream(
            f"/{SERVICE}/Events", request_serializer=bytes, response_deserializer=bytes
        )
        await call(b"warm", timeout=10)  # the connection (and its handshake) before the clock
        body = b"x" * EVENT_BYTES
        began = time.process_time()
        for _ in range(calls):
            await call(body, timeout=10)
        called = time.process_time()
        async for _ in stream(str(events).encode(), timeout=60):
            pass
        streamed = time.process_time()
    finally:
        await channel.close()
        await server.stop(None)
    return 1e6 * (called - began) / calls, 1e6 * (streamed - called) / events


async def tls_cost(rounds: int, calls: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        files = tls.ensure(Layout(Path.cwd(), Path(scratch), Path(scratch) / "cache"))
        secured = Tls(files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes())
        measured: dict[str, list[tuple[float, float]]] = {"plaintext": [], "tls": []}
        for _ in range(rounds):
            measured["plaintext"].append(await _round(Tls(), calls, events))
            measured["tls"].append(await _round(secured, calls, events))
    found: dict[str, Any] = {"rounds": rounds, "calls": calls, "events": events}
    for name, runs in measured.items():
        found[name] = {
            "unary_call_cpu_us": round(statistics.median(u for u, _ in runs), 1),
            "streamed_event_cpu_us": round(statistics.median(e for _, e in runs), 1),
            "rounds": [[round(u, 1), round(e, 1)] for u, e in runs],
        }
    found["added_per_unary_call_cpu_us"] = round(
        found["tls"]["unary_call_cpu_us"] - found["plaintext"]["unary_call_cpu_us"], 1
    )
    found["added_per_streamed_event_cpu_us"] = round(
        found["tls"]["streamed_event_cpu_us"] - found["plaintext"]["streamed_event_cpu_us"], 1
    )
    return found
