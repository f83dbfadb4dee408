"""Logs shipped over the Fluentd forward protocol arrive as records Fluent Bit keeps: maps
with level, logger, message, service, and the trace and span ids of the active span."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from typing import Any

import msgpack  # type: ignore[import-untyped]

SERVICE = """
import logging, os
from opentelemetry import trace
from chatlib import telemetry
from chatlib.settings import Common, Env

shutdown = telemetry.setup("shipping-test", Common(Env(dict(os.environ))))
log = logging.getLogger("chat.shipping")
with trace.get_tracer("test").start_as_current_span("work"):
    log.warning("inside a span %d", 7)
log.info("outside any span")
shutdown()
"""


def _receive(server: socket.socket, records: list[Any]) -> None:
    """A forward-protocol input: each message is [tag, time, record] (message mode) or
    [tag, [[time, record], ...]] (forward mode)."""
    connection, _ = server.accept()
    unpacker = msgpack.Unpacker(raw=False)
    with connection:
        while chunk := connection.recv(65536):
            unpacker.feed(chunk)
            for message in unpacker:
                tag, rest = message[0], message[1:]
                if isinstance(rest[0], list):
                    records.extend((tag, entry[1]) for entry in rest[0])
                else:
                    records.append((tag, rest[1]))


def test_forwarded_log_records_are_maps_with_trace_ids() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)
    records: list[Any] = []
    receiver = threading.Thread(target=_receive, args=(server, records), daemon=True)
    receiver.start()
    env = {
        "CHAT_FLUENT_HOST": "127.0.0.1",
        "CHAT_FLUENT_PORT": str(server.getsockname()[1]),
        "CHAT_OTLP_ENDPOINT": "http://127.0.0.1:9",  # spans go nowhere; only logs matter
        "CHAT_TRACE_SAMPLE_RATIO": "1",
        "CHAT_JWT_SECRET": "unused",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run([sys.executable, "-c", SERVICE], env=env, check=True, timeout=60)
    receiver.join(30)
    server.close()

    by_message = {record["msg"]: (tag, record) for tag, record in records}
    tag, inside = by_message["inside a span 7"]
    assert tag == "chat.shipping-test"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "chat.shipping"
    assert inside["service"] == "shipping-test"
    assert len(inside["trace_id"]) == 32
    assert int(inside["trace_id"], 16) != 0
    assert len(inside["span_id"]) == 16
    assert int(inside["span_id"], 16) != 0
    _, outside = by_message["outside any span"]
    assert outside["level"] == "INFO"
    assert "trace_id" not in outside
