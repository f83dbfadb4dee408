"""One send is one trace, from the BFF's HTTP request to the history writer's Cassandra write."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from tests.e2e.conftest import JAEGER, Clients, eventually


async def test_one_send_is_one_trace_across_every_hop(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    stream = await clients.subscribe(bob)
    await stream.caught_up()

    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    status, body = await alice.post(
        f"/v1/chats/{chat_id}/messages",
        {"client_message_id": uuid.uuid4().hex, "body": "traced"},
        traceparent=traceparent,
    )
    assert status == 201, body
    await stream.messages(1)

    wanted = {
        ("bff", "server"),  # the HTTP request
        ("bff", "client"),  # the gRPC call to messaging
        ("messaging", "messaging.send"),
        ("messaging", "chat.deliveries.v1 publish"),
        ("messaging", "messaging.deliver"),  # the recipient's live push
        ("history-writer", "history.write_message"),  # the Cassandra write
    }

    async def complete() -> dict[str, Any] | None:
        async with clients.http.get(f"{JAEGER}/api/traces/{trace_id}") as response:
            if response.status != 200:
                return None
            found = (await response.json())["data"]
        if not found:
            return None
        trace = found[0]
        return trace if wanted <= _spans(trace) else None

    trace = await eventually(complete, seconds=30)
    assert {span["traceID"] for span in trace["spans"]} == {trace_id}
    write = next(s for s in trace["spans"] if s["operationName"] == "history.write_message")
    tags = {tag["key"]: tag["value"] for tag in write["tags"]}
    assert tags["db.system"] == "cassandra"
    assert tags["messaging.system"] == "kafka"


def _spans(trace: dict[str, Any]) -> set[tuple[str, str]]:
    """(service, operation or kind) of every span: the kind for the auto-instrumented ones."""
    found = set()
    for span in trace["spans"]:
        service = trace["processes"][span["processID"]]["serviceName"]
        found.add((service, span["operationName"]))
        tags = {tag["key"]: tag["value"] for tag in span["tags"]}
        if "span.kind" in tags:
            found.add((service, str(tags["span.kind"])))
    return found
