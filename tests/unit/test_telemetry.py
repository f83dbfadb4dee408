"""The gRPC server tracing around a stream: the span is current while the handler runs, and a
stream that ends anywhere (grpc may close an abandoned stream from another task) ends its span
without logging an error."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from chatlib.telemetry import _traced


class _Context:
    """What the tracing reads of a servicer context: the status code set, if any."""

    def code(self) -> grpc.StatusCode | None:
        return None


async def test_a_stream_closed_from_another_context_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    span = TracerProvider().get_tracer(__name__).start_span("chat.v1.MessagingService/Subscribe")
    seen: list[Any] = []

    async def events(_: Any, __: Any) -> AsyncIterator[int]:
        for n in range(3):
            seen.append(trace.get_current_span())
            yield n
            await asyncio.sleep(0)

    handler: Any = _traced(grpc.unary_stream_rpc_method_handler(events), span)
    stream: Any = handler.unary_stream(None, _Context())
    assert await stream.__anext__() == 0
    assert seen == [span]
    assert trace.get_current_span() is not span, "the span must not stay current after a step"
    # Closed from another context, as the event loop's finalizer of an abandoned stream does.
    with caplog.at_level(logging.ERROR):
        await asyncio.get_running_loop().create_task(stream.aclose(), context=contextvars.Context())
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not span.is_recording(), "the span must end with the stream"
