"""Relay, the call that carries many browsers' streams from a BFF: only the BFF's service token
opens one; each stream on it is its user's Subscribe (the same checks, the same events), ends
alone, and is held back by its own credit only. The BFF carries its browsers over a relay per
messaging server, and lets go of a browser's place on it when the browser leaves."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import defaultdict
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from chatlib import tokens
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc
from tests.e2e.conftest import (
    BFF,
    FOLLOWERS,
    Admin,
    Clients,
    User,
    applied_everywhere,
    eventually,
    jwt_secret,
)
from tests.e2e.test_browser_streams import WS, _next, _sse_event

BFF_OPS = "http://127.0.0.1:9401/metrics"
MESSAGING_SERVERS = 2


class Relay:
    """A Relay call held the way the BFF holds one: requests queued, batches sorted by stream."""

    def __init__(self, clients: Clients, address: str, token: str) -> None:
        self._requests: asyncio.Queue[messaging_pb2.RelayRequest] = asyncio.Queue()
        self.call = messaging_pb2_grpc.MessagingServiceStub(clients.channel(address)).Relay(
            self._pending(), metadata=(("authorization", f"Bearer {token}"),)
        )
        self.events: dict[int, list[messaging_pb2.ClientEvent]] = defaultdict(list)
        self.ended: dict[int, messaging_pb2.RelayEnded] = {}
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._read())

    async def _pending(self) -> AsyncIterator[messaging_pb2.RelayRequest]:
        await self.call.initial_metadata()  # as the BFF: nothing is written before the answer
        if self.call.done():
            return
        while True:
            yield await self._requests.get()

    async def _read(self) -> None:
        try:
            async for batch in self.call:
                for item in batch.events:
                    if item.WhichOneof("item") == "event":
                        self.events[item.stream_id].append(item.event)
                    else:
                        self.ended[item.stream_id] = item.ended
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    def open(self, stream_id: int, token: str, credit: int, cursor: str = "") -> None:
        opened = messaging_pb2.RelayOpen(
            stream_id=stream_id, access_token=token, resume_cursor=cursor, credit=credit
        )
        self._requests.put_nowait(messaging_pb2.RelayRequest(open=opened))

    def grant(self, stream_id: int, events: int) -> None:
        credit = messaging_pb2.RelayCredit(stream_id=stream_id, events=events)
        self._requests.put_nowait(messaging_pb2.RelayRequest(credit=credit))

    def messages(self, stream_id: int) -> list[int]:
        return [
            e.message.message_id
            for e in self.events[stream_id]
            if e.WhichOneof("event") == "message"
        ]

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def service_token() -> str:
    return tokens.issue(jwt_secret(), tokens.SERVICE_SUBJECT, 300)


async def _two_on_one_server(clients: Clients) -> tuple[User, User]:
    """Two new users whose streams live on the same messaging server."""
    first = await clients.user("relay")
    for _ in range(40):
        other = await clients.user("relay")
        if other.messaging_server == first.messaging_server:
            return first, other
    raise AssertionError("no two users on one server in 40 tries")


async def _other_server_user(clients: Clients, server: str) -> User:
    for _ in range(40):
        user = await clients.user("elsewhere")
        if user.messaging_server != server:
            return user
    raise AssertionError("every user landed on one server")


async def test_relay_takes_only_the_bffs_service_token(clients: Clients) -> None:
    user = await clients.user("relay")
    for token, code in (
        (user.token, grpc.StatusCode.PERMISSION_DENIED),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED),
    ):
        relay = Relay(clients, user.messaging_server, token)
        relay.open(1, user.token, credit=8)
        await asyncio.wait_for(relay.task, 10)
        assert relay.error is not None
        assert relay.error.code() == code, relay.error
        assert not relay.events


async def test_streams_on_one_relay_are_held_back_by_their_own_credit_only(
    clients: Clients,
) -> None:
    held, free = await _two_on_one_server(clients)
    sender = await clients.user("sender")
    to_held, to_free = await sender.open_chat(held), await sender.open_chat(free)
    relay = Relay(clients, held.messaging_server, service_token())
    try:
        relay.open(1, held.token, credit=1)
        relay.open(2, free.token, credit=100)
        await eventually(lambda: _async(len(relay.events[1]) == 1 and len(relay.events[2]) == 1))
        assert relay.events[1][0].WhichOneof("event") == "caught_up"
        sent_held = [await sender.send(to_held, f"held {n}") for n in range(3)]
        sent_free = [await sender.send(to_free, f"free {n}") for n in range(3)]
        await eventually(lambda: _async(relay.messages(2) == sent_free))
        # The held stream spent its one event on caught_up: its messages wait on the server.
        await asyncio.sleep(0.5)
        assert relay.messages(1) == []
        relay.grant(1, 10)
        await eventually(lambda: _async(relay.messages(1) == sent_held))
        assert relay.messages(2) == sent_free  # each once, in order
        assert relay.error is None
        assert not relay.ended
    finally:
        await relay.close()


async def test_a_stream_that_is_refused_ends_alone(clients: Clients) -> None:
    user = await clients.user("relay")
    elsewhere = await _other_server_user(clients, user.messaging_server)
    relay = Relay(clients, user.messaging_server, service_token())
    try:
        relay.open(1, "not-a-token", credit=4)
        relay.open(2, elsewhere.token, credit=4)
        relay.open(3, user.token, credit=4, cursor="not-a-cursor")
        relay.open(4, user.token, credit=4)
        await eventually(lambda: _async(len(relay.ended) == 3 and bool(relay.events[4])))
        assert relay.ended[1].code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        assert "token" in relay.ended[1].detail
        assert relay.ended[2].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert relay.ended[2].redirect == elsewhere.messaging_server
        assert relay.ended[3].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "cursor" in relay.ended[3].detail
        assert relay.events[4][0].WhichOneof("event") == "caught_up"
        # A stream id already open is a broken protocol: the whole call is refused.
        relay.open(4, user.token, credit=4)
        await asyncio.wait_for(relay.task, 10)
        assert relay.error is not None
        assert relay.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "stream_id 4" in (relay.error.details() or "")
    finally:
        await relay.close()


async def _async(value: bool) -> bool:
    return value


async def _metric(name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(BFF_OPS) as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_the_bff_carries_its_browsers_over_one_relay_per_server(clients: Clients) -> None:
    users = [await clients.user("browser") for _ in range(12)]
    before = await _metric("bff_relay_streams")
    async with aiohttp.ClientSession() as http:
        sockets = []
        for user in users:
            ws = await http.ws_connect(WS)
            await ws.send_json({"type": "hello", "access_token": user.token, "cursor": ""})
            sockets.append(ws)
        for ws in sockets:
            assert (await _next(ws, "caught_up"))["type"] == "caught_up"
        assert await _metric("bff_relay_streams") >= before + len(users)
        assert 1 <= await _metric("bff_relay_calls") <= MESSAGING_SERVERS
        for ws in sockets:
            await ws.close()

    async def let_go() -> bool:
        return await _metric("bff_relay_streams") <= before

    await eventually(let_go)


@pytest.fixture
async def quick_heartbeat(admin: Admin) -> None:
    """Heartbeats every second (the admin fixture puts the section back)."""
    changed = await admin.change("web", heartbeat_seconds=1)
    await applied_everywhere("web", changed["version"], FOLLOWERS["web"])


@pytest.mark.usefixtures("quick_heartbeat")
async def test_an_sse_stream_whose_browser_left_ends_with_the_next_heartbeat(
    clients: Clients,
) -> None:
    user = await clients.user("sse")
    before = await _metric("bff_relay_streams")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{BFF}/v1/stream/tickets", headers=user.auth) as r:
            ticket = (await r.json())["ticket"]
        async with http.get(f"{BFF}/v1/stream/sse", params={"ticket": ticket}) as r:
            assert (await _sse_event(r))["event"] == "caught_up"
            assert await _metric("bff_relay_streams") == before + 1
    # The browser left and no event is coming for it: the heartbeat finds it gone.

    async def let_go() -> bool:
        return await _metric("bff_relay_streams") <= before

    await eventually(let_go)
