"""One ``setup(service)`` per process: OTLP traces to Jaeger, JSON logs with trace ids.

Trace context crosses every hop: gRPC metadata (the OpenTelemetry gRPC interceptors), HTTP
headers (the aiohttp middleware) and Kafka record headers (``kafka_headers`` /
``context_from_headers``), all as W3C ``traceparent``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from chatlib.settings import Common


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace and span ids (never message bodies)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
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
        return json.dumps(entry)


def setup(service: str, common: Common, *, instance: str = "") -> Callable[[], None]:
    """Configure tracing and logging for this process; returns the shutdown function."""
    resource = Resource.create(
        {"service.name": service, "service.instance.id": instance or service}
    )
    # Parent-based: a request that arrives with a sampled trace is always recorded, so one
    # send is one whole trace or none of it.
    sampler = ParentBased(TraceIdRatioBased(common.trace_sample_ratio))
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
        from fluent import handler as fluent_handler  # imported only when a shipper is set

        shipper = fluent_handler.FluentHandler(
            f"chat.{service}", host=common.fluent_host, port=common.fluent_port
        )
        shipper.setFormatter(JsonFormatter(service))
        root.addHandler(shipper)
    for noisy in ("cassandra", "grpc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def shutdown() -> None:
        provider.shutdown()

    return shutdown


def kafka_headers() -> list[tuple[str, str | bytes | None]]:
    """The current trace context as Kafka record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: list[tuple[str, bytes]] | None) -> context.Context:
    carrier = {key: value.decode("latin-1") for key, value in headers or [] if value is not None}
    return propagate.extract(carrier)


def instrument_aiohttp_server() -> None:
    """Server spans for every aiohttp request, continuing the caller's W3C trace context.

    Call before creating the ``web.Application``: the instrumentor replaces the class.
    """
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument()


def grpc_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """Server spans for every call, continuing the caller's trace from gRPC metadata."""
    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def grpc_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Client spans, and the trace context injected into gRPC metadata."""
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]
