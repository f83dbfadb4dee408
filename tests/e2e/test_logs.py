"""What operators see in the logs: normal behaviour logs no error (an operator alerting on ERROR
is never woken by a stream ending)."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import grpc
import pytest

from infra.layout import Layout
from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, Clients

SERVERS = ("messaging-m1", "messaging-m2")


def _logs() -> dict[str, Path]:
    layout = Layout.from_env()
    return {name: layout.log(name) for name in SERVERS}


def _errors_since(marks: dict[str, int]) -> list[str]:
    found = []
    for name, path in _logs().items():
        with path.open("rb") as log:
            log.seek(marks[name])
            for line in log.read().decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # librdkafka's own lines (connection notices) are not ours
                if entry.get("level") in ("ERROR", "CRITICAL"):
                    found.append(f"{name}: {entry.get('logger')}: {entry.get('msg')}")
    return found


async def _read_to_end(call: Any) -> None:
    while await asyncio.wait_for(call.read(), 15) is not grpc.aio.EOF:
        pass


async def test_streams_that_end_normally_log_no_error(clients: Clients) -> None:
    marks = {name: path.stat().st_size for name, path in _logs().items()}
    alice, bob, chat = await clients.pair()
    # Sampled traces: the server keeps a span current for the stream's handler.
    traced = (("traceparent", f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"),)
    for user in (alice, bob):
        call = clients.stub(user.messaging_server).Subscribe(
            messaging_pb2.SubscribeRequest(),
            metadata=(("authorization", f"Bearer {user.token}"), *traced),
        )
        first = await asyncio.wait_for(call.read(), 15)
        assert isinstance(first, messaging_pb2.ClientEvent)
        assert first.WhichOneof("event") == "caught_up"
        await alice.send(chat, "and goodbye")
        event = await asyncio.wait_for(call.read(), 15)
        assert isinstance(event, messaging_pb2.ClientEvent)
        assert event.WhichOneof("event") == "message"
        if user is alice:
            # The client goes away while the server is writing to it: more than the
            # connection's flow-control window waits unread.
            for n in range(80):
                await bob.send(chat, f"{n} " + "x" * 4000)
            await asyncio.sleep(0.5)
            call.cancel()
        else:
            # The server ends it: the session logs out.
            async with clients.http.delete(f"{BFF}/v1/sessions/current", headers=user.auth) as r:
                assert r.status == 204, await r.text()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await _read_to_end(call)
            assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await asyncio.sleep(1)  # what a stream's end logs is written by then
    assert _errors_since(marks) == []
