"""One ``setup(service)`` per process: OTLP traces to Jaeger, JSON logs with trace ids.

Trace context crosses every hop: gRPC metadata (the OpenTelemetry gRPC interceptors), HTTP
headers (the aiohttp middleware) and Kafka record headers (``kafka_headers`` /
``context_from_headers``), all as W3C ``traceparent``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry import context as context_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.util.types import Attributes

from chatlib.settings import Common


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace and span ids (never message bodies)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record))

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        span = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return entry


class MapFormatter(JsonFormatter):
    """The same fields as a map, for the Fluentd forward protocol: the shipper packs what
    the formatter returns as is, and a string record is not a record to Fluent Bit (it drops
    it). Returns a dict where logging expects a string; only the forward handler uses it."""

    def format(self, record: logging.LogRecord) -> Any:
        return self.entry(record)


def setup(service: str, common: Common, *, instance: str = "") -> Callable[[], None]:
    """Configure tracing and logging for this process; returns the shutdown function."""
    resource = Resource.create(
        {"service.name": service, "service.instance.id": instance or service}
    )
    # Parent-based: a request that arrives with a sampled trace is always recorded, so one
    # send is one whole trace or none of it.
    sampler = ParentBased(_EntrySampler(common.trace_sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=common.otlp_endpoint, insecure=True),
            schedule_delay_millis=200,
        )
    )
    trace.set_tracer_provider(provider)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    if common.fluent_host != "-":
        from fluent import asynchandler  # imported only when a shipper is set

        # Sends from a thread of its own: a slow or absent shipper never blocks the loop
        # (records queue, and the oldest are dropped when the queue is full).
        shipper = asynchandler.FluentHandler(
            f"chat.{service}",
            host=common.fluent_host,
            port=common.fluent_port,
            nanosecond_precision=True,
            queue_maxsize=10_000,
            queue_circular=True,
        )
        shipper.setFormatter(MapFormatter(service))
        root.addHandler(shipper)
    for noisy in ("cassandra", "grpc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def shutdown() -> None:
        provider.shutdown()
        for handler in root.handlers:
            handler.close()  # the forward shipper sends what it still holds

    return shutdown


#: An attribute an entry point sets on a root span it has already chosen to record.
DECIDED = "chat.sampling.decided"


class _EntrySampler(Sampler):
    """Root spans by trace id ratio, unless the entry point creating it has already decided
    (``DECIDED`` in its attributes): it did so without creating a span at all for the rest."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if attributes and attributes.get(DECIDED):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._ratio.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EntrySampler({self._ratio.get_description()})"


def kafka_headers() -> list[tuple[str, str | bytes | None]]:
    """The current trace context as Kafka record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: list[tuple[str, bytes]] | None) -> context.Context:
    carrier = {key: value.decode("latin-1") for key, value in headers or [] if value is not None}
    return propagate.extract(carrier)


def sampled_context(headers: list[tuple[str, bytes]] | None) -> context.Context | None:
    """The trace context a record carries if its trace is sampled, else None.

    Consumers open spans only for sampled traces: for the rest even a non-recording span costs
    a context extraction and a span object per record, for nothing.
    """
    for key, value in headers or ():
        # W3C traceparent: version-traceid-parentid-flags; bit 0 of the flags is "sampled".
        if key == "traceparent" and value and len(value) >= 2:
            try:
                sampled = int(value[-2:], 16) & 1
            except ValueError:
                return None
            return context_from_headers(headers) if sampled else None
    return None


def instrument_aiohttp_server() -> None:
    """Server spans for every aiohttp request, continuing the caller's W3C trace context.

    Call before creating the ``web.Application``: the instrumentor replaces the class.
    """
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument()


def grpc_server_interceptors(ratio: float) -> list[grpc.aio.ServerInterceptor]:
    """Server spans, continuing the caller's trace from gRPC metadata; of calls that carry
    none, ``ratio`` of them start a new trace (CHAT_TRACE_SAMPLE_RATIO)."""
    return [_ServerTracing(ratio)]


class _ServerTracing(grpc.aio.ServerInterceptor):
    """A server span for each sampled call; an unsampled call runs its handler untouched.

    The OpenTelemetry instrumentation wraps every call's context and runs its span machinery
    whatever the sampling decision; at hundreds of calls a second that cost more CPU than a
    send's own work. Here the decision comes first: a call with a parent trace gets a span that
    the parent's sampling decides on; a call without one starts a trace only for ``ratio`` of
    calls (told to the sampler through ``DECIDED``), and no span object at all otherwise. Only
    a recording span wraps the handler.
    """

    def __init__(self, ratio: float) -> None:
        self._tracer = trace.get_tracer(__name__)
        self._ratio = ratio

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        carrier = {
            key: value if isinstance(value, str) else value.decode("latin-1")
            for key, value in details.invocation_metadata or ()
            if key in ("traceparent", "tracestate")
        }
        name = details.method.lstrip("/")
        service, _, method = name.partition("/")
        attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
        }
        if carrier:
            parent = propagate.extract(carrier)
        elif random.random() < self._ratio:  # noqa: S311 - sampling, not security
            parent, attributes[DECIDED] = None, True
        else:
            return handler  # a new trace this call does not start: no span work at all
        span = self._tracer.start_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        if not span.is_recording():
            return handler
        return _traced(handler, span)


def _traced(
    handler: grpc.RpcMethodHandler[Any, Any], span: trace.Span
) -> grpc.RpcMethodHandler[Any, Any]:
    # grpc's stubs describe the synchronous handler types; aio behaviors are coroutines.
    behaviors: Any = handler

    def finish(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> None:
        code = context.code() if hasattr(context, "code") else None
        if isinstance(code, grpc.StatusCode):
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(trace.StatusCode.ERROR, str(code))
        elif error is not None and not isinstance(error, asyncio.CancelledError):
            span.set_status(trace.StatusCode.ERROR, type(error).__name__)
        span.end()

    if behaviors.unary_unary is not None:
        unary = behaviors.unary_unary

        async def unary_behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            token = context_api.attach(trace.set_span_in_context(span))
            error: BaseException | None = None
            try:
                return await unary(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                context_api.detach(token)
                finish(context, error)

        return grpc.unary_unary_rpc_method_handler(
            unary_behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if behaviors.unary_stream is not None:
        streaming = behaviors.unary_stream

        async def stream_behavior(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            # The span is current only while the handler runs, one step at a time: a context
            # attached across a ``yield`` would be detached wherever the stream happens to
            # end (grpc closes a cancelled stream from another task), which cannot be done.
            current = trace.set_span_in_context(span)
            items = streaming(request, context).__aiter__()
            error: BaseException | None = None
            try:
                while True:
                    token = context_api.attach(current)
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        context_api.detach(token)
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                await items.aclose()
                finish(context, error)

        return grpc.unary_stream_rpc_method_handler(
            stream_behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    span.end()
    return handler


def grpc_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Client spans, and the trace context injected into gRPC metadata."""
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
