"""A span exported by the OpenTelemetry SDK over OTLP is found through Jaeger's query API."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.integration.conftest import Endpoints


def test_an_exported_trace_is_queryable(endpoints: Endpoints, unique: str) -> None:
    service = f"{unique}-svc"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoints.otlp_grpc, insecure=True))
    )
    tracer = provider.get_tracer("tests.integration")
    with tracer.start_as_current_span("messaging.send") as parent:
        parent.set_attribute("chat.id", "d:1:2")
        with tracer.start_as_current_span("history.write_batch") as child:
            child.set_attribute("db.system", "cassandra")
    trace_id = f"{parent.get_span_context().trace_id:032x}"
    provider.shutdown()

    trace = _find_trace(endpoints.jaeger_query, service, spans=2, seconds=30)

    assert trace["traceID"] == trace_id
    spans = {span["operationName"]: span for span in trace["spans"]}
    assert set(spans) == {"messaging.send", "history.write_batch"}
    child_refs = spans["history.write_batch"]["references"]
    assert [(ref["refType"], ref["spanID"]) for ref in child_refs] == [
        ("CHILD_OF", spans["messaging.send"]["spanID"])
    ]
    tags = {tag["key"]: tag["value"] for tag in spans["messaging.send"]["tags"]}
    assert tags["chat.id"] == "d:1:2"
    process = trace["processes"][spans["messaging.send"]["processID"]]
    assert process["serviceName"] == service


def _find_trace(query_url: str, service: str, *, spans: int, seconds: float) -> dict[str, Any]:
    """Poll the query API until the service's trace holds ``spans`` spans: Jaeger batches
    spans before they become searchable, and each span is exported as it ends (the child
    first), so a trace may be found before all of its spans are."""
    url = f"{query_url}/api/traces?" + urllib.parse.urlencode({"service": service, "limit": 5})
    deadline = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - test endpoint
            found: list[dict[str, Any]] = json.load(response).get("data") or []
        if found:
            assert len(found) == 1, found
            if len(found[0]["spans"]) >= spans:
                return found[0]
        assert time.monotonic() < deadline, f"no whole trace for {service} after {seconds}s"
        time.sleep(0.5)
