"""Driving the running system as clients do: the BFF over HTTP, messaging over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from clients import deployment
from clients.stream import StreamState, events
from infra.layout import Layout
from protos.chat.v1 import groups_pb2_grpc, messaging_pb2, messaging_pb2_grpc

#: The stack ./dev runs here: the cluster over TLS (verified against its CA), or the single
#: node in plaintext.
HERE = deployment.local()
BFF = HERE.bff
CA = str(HERE.ca) if HERE.ca else None
JAEGER = os.environ.get("CHAT_JAEGER_QUERY_URL", "http://127.0.0.1:16686")
PASSWORD = "correct horse battery"


def jwt_secret() -> str:
    return (
        os.environ.get("CHAT_JWT_SECRET")
        or (Layout.from_env().state / "secrets" / "jwt").read_text().strip()
    )


@dataclass
class User:
    username: str
    user_id: int
    token: str
    messaging_server: str
    http: aiohttp.ClientSession

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        async with self.http.post(f"{BFF}{path}", json=body, headers={**self.auth, **headers}) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"{BFF}{path}", headers=self.auth) as r:
            return r.status, await r.json(content_type=None)

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        """Any other method (PATCH, PUT, DELETE), with a JSON body or none."""
        async with self.http.request(
            method, f"{BFF}{path}", json=body, headers={**self.auth, **headers}
        ) as r:
            return r.status, await r.json(content_type=None)

    async def open_chat(self, peer: User) -> str:
        status, body = await self.post("/v1/chats/direct", {"peer_id": str(peer.user_id)})
        assert status == 200, body
        return str(body["chat_id"])

    async def send(self, chat_id: str, text: str, client_id: str | None = None) -> int:
        status, body = await self.post(
            f"/v1/chats/{chat_id}/messages",
            {"client_message_id": client_id or uuid.uuid4().hex, "body": text},
        )
        assert status in (200, 201), body
        return int(body["message_id"])

    async def history(self, chat_id: str, **query: str) -> list[dict[str, Any]]:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        status, body = await self.get(f"/v1/chats/{chat_id}/messages?{params}")
        assert status == 200, body
        return list(body["messages"])

    async def chats(self) -> list[dict[str, Any]]:
        status, body = await self.get("/v1/chats")
        assert status == 200, body
        return list(body["chats"])


@dataclass
class Stream:
    """One live gRPC stream, its events collected in the background."""

    call: Any
    events: asyncio.Queue[messaging_pb2.ClientEvent] = field(default_factory=asyncio.Queue)
    cursor: str = ""

    async def next(self, seconds: float = 15.0) -> messaging_pb2.ClientEvent:
        event = await asyncio.wait_for(self.events.get(), seconds)
        self.cursor = event.cursor
        return event

    async def messages(self, count: int, seconds: float = 20.0) -> list[messaging_pb2.ClientEvent]:
        found: list[messaging_pb2.ClientEvent] = []
        async with asyncio.timeout(seconds):
            while len(found) < count:
                event = await self.next(seconds)
                if event.WhichOneof("event") == "message":
                    found.append(event)
        return found

    async def caught_up(self) -> messaging_pb2.ClientEvent:
        while True:
            event = await self.next()
            if event.WhichOneof("event") == "caught_up":
                return event


class Clients:
    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.calls: list[Any] = []

    async def user(self, prefix: str = "u") -> User:
        username = f"{prefix}{uuid.uuid4().hex[:10]}"
        password = PASSWORD
        async with self.http.post(
            f"{BFF}/v1/users", json={"username": username, "password": password}
        ) as r:
            assert r.status == 201, await r.text()
        return await self.login(username, password)

    async def pair(self) -> tuple[User, User, str]:
        """Two new users, alice and bob, and their direct chat."""
        alice = await self.user("alice")
        bob = await self.user("bob")
        return alice, bob, await alice.open_chat(bob)

    async def login(self, username: str, password: str = PASSWORD) -> User:
        async with self.http.post(
            f"{BFF}/v1/sessions", json={"username": username, "password": password}
        ) as r:
            body = await r.json()
            assert r.status == 201, body
        return User(
            username,
            int(body["user_id"]),
            body["access_token"],
            body["messaging_server"],
            self.http,
        )

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self.channels.get(address)
        if channel is None:
            channel = HERE.dial(address)
            self.channels[address] = channel
        return channel

    def stub(self, address: str) -> messaging_pb2_grpc.MessagingServiceAsyncStub:
        return messaging_pb2_grpc.MessagingServiceStub(self.channel(address))

    def groups(self, user: User) -> groups_pb2_grpc.GroupServiceAsyncStub:
        return groups_pb2_grpc.GroupServiceStub(self.channel(user.messaging_server))

    async def subscribe(self, user: User, cursor: str = "") -> Stream:
        call = self.stub(user.messaging_server).Subscribe(
            messaging_pb2.SubscribeRequest(resume_cursor=cursor),
            metadata=(("authorization", f"Bearer {user.token}"),),
        )
        stream = Stream(call)

        async def pump() -> None:
            try:
                async for event in call:
                    await stream.events.put(event)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise

        self.tasks.append(asyncio.create_task(pump()))
        self.calls.append(call)
        return stream

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task
        for channel in self.channels.values():
            await channel.close()


http_client = HERE.http


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    async with http_client() as http:
        found = Clients(http)
        try:
            yield found
        finally:
            await found.close()
    if BFF.startswith("https://"):
        # A TLS connection closes over a few more turns of the loop (its close_notify goes
        # out, the socket closes after): the test's loop ends right after this fixture, and a
        # socket still closing then is reported as unclosed in whichever test collects it
        # (cluster run 37, after the wss test). The wait lets those closes finish.
        await asyncio.sleep(0.25)


async def eventually(check: Any, *, seconds: float = 20.0) -> Any:
    """Poll an async check until it returns a truthy value (consumers apply asynchronously)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {seconds}s; last result {result!r}")
        await asyncio.sleep(0.2)


CONFIG = HERE.config


def admin_token() -> str:
    return (
        os.environ.get("CHAT_ADMIN_TOKEN")
        or (Layout.from_env().state / "secrets" / "admin").read_text().strip()
    )


class Admin:
    """The config service's admin API, as an operator's script would use it."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.token = token

    async def get(self, section: str) -> dict[str, Any]:
        async with self.http.get(
            f"{CONFIG}/v1/config/{section}", headers={"Authorization": f"Bearer {self.token}"}
        ) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())

    async def put(self, section: str, value: Any, **headers: str) -> tuple[int, Any]:
        async with self.http.put(
            f"{CONFIG}/v1/config/{section}",
            json=value,
            headers={"Authorization": f"Bearer {self.token}", **headers},
        ) as r:
            return r.status, await r.json(content_type=None)

    async def change(self, section: str, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into the section and store it; returns the new document."""
        current = await self.get(section)
        status, body = await self.put(section, current["value"] | changes)
        assert status == 200, body
        return dict(body)

    async def history(self, section: str) -> list[dict[str, Any]]:
        async with self.http.get(
            f"{CONFIG}/v1/config/{section}/history",
            headers={"Authorization": f"Bearer {self.token}"},
        ) as r:
            assert r.status == 200, await r.text()
            return list((await r.json())["entries"])


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    """The admin API; every section is put back as it was when the test ends."""
    async with http_client() as http:
        found = Admin(http, admin_token())
        before = {
            s: (await found.get(s))["value"]
            for s in (
                "partitioning",
                "limits",
                "features",
                "groups",
                "messages",
                "notifications",
                "sessions",
                "auth",
                "web",
                "files",
            )
        }
        try:
            yield found
        finally:
            for section, value in before.items():
                status, body = await found.put(section, value)
                assert status == 200, body
                # The next test starts only once every service has the restored config and
                # the messaging servers consume their partitions again.
                await applied_everywhere(section, body["version"], FOLLOWERS[section])
            await eventually(messaging_ready)


#: Ops ports of the services that follow each config section.
FOLLOWERS = {
    "partitioning": (9311, 9312, 9401),
    "limits": (9311, 9312, 9301),
    "features": (9311, 9312, 9401),
    "groups": (9311, 9312),
    "messages": (9311, 9312),
    "notifications": (9601,),
    "sessions": (9401,),
    "auth": (9401,),
    "web": (9401,),
    "files": (9311, 9312),
}


async def messaging_ready() -> bool:
    async with aiohttp.ClientSession() as http:
        for port in (9311, 9312):
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status != 200:
                    return False
    return True


class Follower:
    """A client's live stream held the way a mobile client holds it
    (``clients.stream``), its messages collected in the background."""

    def __init__(self, clients: Clients, user: User) -> None:
        self.clients = clients
        self.user = user
        self.state = StreamState(user.messaging_server)
        self.received: list[int] = []
        self.caught_up = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def redirects(self) -> list[str]:
        return self.state.redirects

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        async for event in events(self.state, self.user.token, self.clients.channel):
            kind = event.WhichOneof("event")
            if kind == "message":
                self.received.append(event.message.message_id)
            elif kind == "caught_up":
                self.caught_up.set()
            elif kind == "resync_required":
                raise AssertionError(f"resync required: {event}")


async def whole_history(user: User, chat: str, page_size: int = 200) -> list[dict[str, Any]]:
    """Every entry of the chat's history as ``user`` sees it, newest first, page by page."""
    found: list[dict[str, Any]] = []
    before = ""
    while True:
        query = {"limit": str(page_size)} | ({"before": before} if before else {})
        page = await user.history(chat, **query)
        found += page
        if len(page) < page_size:
            return found
        before = page[-1]["message_id"]


async def applied_everywhere(section: str, version: int, ops_ports: tuple[int, ...]) -> None:
    """Wait until each service reports ``version`` of ``section`` in force (its /metrics)."""
    line = f'chat_config_version{{section="{section}"}} {float(version)}'

    async def applied() -> bool:
        async with aiohttp.ClientSession() as http:
            for port in ops_ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    if line not in await r.text():
                        return False
        return True

    await eventually(applied)


async def follow(clients: Clients, users: list[User]) -> list[Follower]:
    """A Follower per user, each caught up before this returns."""
    followers = [Follower(clients, user) for user in users]
    for follower in followers:
        follower.start()
    for follower in followers:
        await asyncio.wait_for(follower.caught_up.wait(), 20)
    return followers


async def each_received_once(
    followers: list[Follower], acked: dict[str, list[int]], members: dict[str, set[int]]
) -> None:
    """Every acknowledged message of a chat reached each member's stream, exactly once.

    ``members`` maps a chat to the indexes of its members in ``followers``."""
    for index, follower in enumerate(followers):
        expected = sorted(m for chat, ids in acked.items() if index in members[chat] for m in ids)

        async def arrived(follower: Follower = follower, want: int = len(expected)) -> bool:
            return len(follower.received) >= want

        await eventually(arrived, seconds=30)
        await asyncio.sleep(0.2)  # a duplicate would arrive right behind
        assert sorted(follower.received) == expected, f"client {index}"
    for follower in followers:
        await follower.stop()


@dataclass
class Receiver:
    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: recipient id -> statuses to answer, in turn, before 200
    failures: dict[str, list[int]] = field(default_factory=dict)
    attempts: list[str] = field(default_factory=list)

    def for_user(self, user_id: int) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["recipient_id"] == str(user_id)]


@pytest.fixture
async def receiver(admin: Admin) -> AsyncIterator[Receiver]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    found = Receiver(f"http://127.0.0.1:{port}/push")

    async def push(request: web.Request) -> web.Response:
        body = await request.json()
        found.attempts.append(body["notification_id"])
        planned = found.failures.get(body["recipient_id"])
        if planned:
            return web.Response(status=planned.pop(0))
        found.calls.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/push", push)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await admin.change("notifications", webhook_url=found.url, collapse_seconds=2, max_attempts=3)
    try:
        yield found
    finally:
        await runner.cleanup()
