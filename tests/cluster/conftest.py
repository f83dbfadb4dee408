"""Faults under load on the cluster (``./dev up --cluster``): the nodes, a steady load of
clients that retry until acknowledged, and the accounting done after each fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from infra import apps, cluster, modes, processes, stack
from infra.catalog import App, apps_of
from infra.layout import Layout
from infra.services import Context, Service
from infra.services.cassandra import CassandraNode
from infra.services.kafka import KafkaNode
from infra.services.redis import RedisNode
from infra.services.seaweedfs import SeaweedFSNode
from tests.e2e.conftest import BFF, Clients, Follower, User, clients, eventually

__all__ = ["clients"]

DELIVERIES = "chat.deliveries.v1"
#: The cluster's own services (three messaging servers).
APPS = apps_of(modes.CLUSTER)
#: What the history service counts at most as a chat's unread messages.
UNREAD_CAP = 1000


@pytest.fixture(scope="session", autouse=True)
def _the_cluster_runs() -> None:
    if modes.current(Layout.from_env()) != modes.CLUSTER:
        pytest.fail("the cluster suite runs against ./dev up --cluster (./dev test --cluster)")


class Nodes:
    """The cluster's processes, and the faults done to them."""

    def __init__(self) -> None:
        self.layout = Layout.from_env()
        self.ctx = Context(self.layout)
        self.keys = cluster.Secrets.of(self.layout)
        self.kafka = {n: KafkaNode(n, self.layout) for n in cluster.NODES}
        self.cassandra = {n: CassandraNode(n, self.layout) for n in cluster.NODES}
        self.redis = {n: RedisNode(n, self.layout) for n in cluster.NODES}
        self.object_store = {n: SeaweedFSNode(n) for n in cluster.NODES}

    def _tracked(self, service: Service | App) -> processes.Tracked:
        tracked = processes.alive(self.layout.pidfile(service.name))
        assert tracked is not None, f"{service.name} does not run"
        return tracked

    def app(self, name: str) -> App:
        return next(app for app in APPS if app.name == name)

    async def start_app(self, app: App) -> None:
        """Start one of our services again as ./dev does (and wait until it is ready)."""
        await asyncio.to_thread(apps.start, self.ctx, {app.name})

    async def kill(self, *services: Service | App) -> None:
        """SIGKILL: the process is gone at once, nothing flushed, no goodbye to its peers."""
        for service in services:
            tracked = self._tracked(service)
            os.killpg(tracked.pid, signal.SIGKILL)
            while processes.start_ticks(tracked.pid) == tracked.start_ticks:
                processes.reap(tracked.pid)  # ours if a test restarted it
                await asyncio.sleep(0.05)

    def pause(self, service: Service | App) -> None:
        """SIGSTOP: a gray failure; its ports stay open and nobody answers."""
        os.killpg(self._tracked(service).pid, signal.SIGSTOP)

    def resume(self, service: Service | App) -> None:
        os.killpg(self._tracked(service).pid, signal.SIGCONT)

    async def start(self, *services: Service) -> None:
        """Bring killed nodes back as ./dev does (one group started together)."""
        await asyncio.to_thread(stack.up, self.ctx, list(services))

    def _kafka_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": cluster.KAFKA_BOOTSTRAP,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": cluster.ADMIN,
            "sasl.password": self.keys.password(f"kafka-{cluster.ADMIN}"),
        }

    async def busiest_leader(self, seconds: float = 3.0) -> KafkaNode:
        """The broker leading the deliveries partition that took the most records lately."""

        def measure() -> KafkaNode:
            consumer = Consumer(self._kafka_config() | {"group.id": f"faults-{uuid.uuid4().hex}"})
            try:
                metadata = consumer.list_topics(DELIVERIES, timeout=10).topics[DELIVERIES]
                parts = sorted(metadata.partitions)

                def ends() -> list[int]:
                    return [
                        consumer.get_watermark_offsets(TopicPartition(DELIVERIES, p), timeout=10)[1]
                        for p in parts
                    ]

                before = ends()
                time.sleep(seconds)
                grown = [after - was for after, was in zip(ends(), before, strict=True)]
                busiest = parts[grown.index(max(grown))]
                return self.kafka[metadata.partitions[busiest].leader]
            finally:
                consumer.close()

        return await asyncio.to_thread(measure)

    async def fully_replicated(self) -> bool:
        """Every partition of every topic has all three replicas in sync."""

        def check() -> bool:
            admin = AdminClient(self._kafka_config())
            topics = admin.list_topics(timeout=10).topics.values()
            return all(len(p.isrs) == 3 for t in topics for p in t.partitions.values())

        try:
            return await asyncio.to_thread(check)
        except KafkaException:
            return False

    def redis_primary(self) -> RedisNode:
        found = [node for node in self.redis.values() if node.role() == "primary"]
        assert len(found) == 1, f"primaries: {[n.name for n in found]}"
        return found[0]

    async def settled(self) -> None:
        """Every node runs and answers, every partition is fully replicated, Redis has one
        primary with two replicas: where each fault starts from."""
        everything = [*self.kafka.values(), *self.cassandra.values(), *self.redis.values()]

        async def answering() -> bool:
            return all(await asyncio.gather(*(asyncio.to_thread(s.probe) for s in everything)))

        await eventually(answering, seconds=180)
        await eventually(self.fully_replicated, seconds=120)

        async def replicas() -> bool:
            roles = await asyncio.gather(*(asyncio.to_thread(n.role) for n in self.redis.values()))
            return sorted(roles) == ["primary", "replica", "replica"]

        await eventually(replicas, seconds=60)
        await every_service_ready(seconds=120)


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    found = Nodes()
    await found.settled()
    try:
        yield found
    finally:
        # Whatever a failed test left stopped or paused runs again for the next one.
        storage = [
            *found.kafka.values(),
            *found.cassandra.values(),
            *found.redis.values(),
            *found.object_store.values(),
        ]
        for name in [service.name for service in storage] + [app.name for app in APPS]:
            tracked = processes.alive(found.layout.pidfile(name))
            if tracked is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(tracked.pid, signal.SIGCONT)
        await found.start(
            *found.redis.values(),
            *found.kafka.values(),
            *found.cassandra.values(),
            *found.object_store.values(),
        )
        await asyncio.to_thread(apps.up, found.ctx, missing_only=True)


async def readiness() -> dict[str, int]:
    return {name: status for name, (status, _) in (await _readyz()).items()}


async def _readyz() -> dict[str, tuple[int, str]]:
    """Each service's /readyz status and body (0 and the error when it does not answer)."""
    found = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for app in APPS:
            try:
                async with http.get(f"http://127.0.0.1:{app.ops_port}/readyz") as response:
                    found[app.name] = (response.status, await response.text())
            except (aiohttp.ClientError, TimeoutError) as exc:
                found[app.name] = (0, repr(exc))
    return found


async def every_service_ready(seconds: float) -> None:
    async def ready() -> bool:
        return set((await readiness()).values()) == {200}

    try:
        await eventually(ready, seconds=seconds)
    except AssertionError:
        # Name what each unready service says is wrong, and what it logged last.
        unready = {name: found for name, found in (await _readyz()).items() if found[0] != 200}
        layout = Layout.from_env()
        tails = {name: _tail(layout.log(name)) for name in unready}
        raise AssertionError(
            f"services not ready after {seconds:.0f}s: {unready}\n"
            + "\n".join(f"--- {name} log ---\n{tail}" for name, tail in tails.items())
        ) from None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return repr(exc)


class TimedFollower(Follower):
    """A live stream that also notes when each message arrived."""

    def __init__(self, clients: Clients, user: User) -> None:
        super().__init__(clients, user)
        self.arrivals: list[float] = []
        #: When the stream said it was caught up: once at the start, then after each resume.
        self.caught_up_at: list[float] = []

    async def _run(self) -> None:
        from clients.stream import events  # the client's own reconnecting stream

        async def locate() -> str:
            # As a mobile client does once its server stops answering: ask where to go.
            try:
                status, body = await self.user.get("/v1/sessions/current/messaging-server")
            except (aiohttp.ClientError, TimeoutError):
                return self.state.address
            return str(body["messaging_server"]) if status == 200 else self.state.address

        async for event in events(self.state, self.user.token, self.clients.channel, locate):
            kind = event.WhichOneof("event")
            is_message = kind == "message" and not event.message.HasField("change")
            self._note(kind, event.message.message_id if is_message else None, event)

    def _note(self, kind: str | None, message_id: int | None, event: object) -> None:
        """A message (``message_id``, None for a group's change) or a caught_up, when it came;
        a resync_required fails (no cursor here is ever too old)."""
        if kind == "message" and message_id is not None:
            self.received.append(message_id)
            self.arrivals.append(time.monotonic())
        elif kind == "caught_up":
            self.caught_up.set()
            self.caught_up_at.append(time.monotonic())
        elif kind == "resync_required":
            raise AssertionError(f"resync required: {event}")

    def longest_lag(self, acked_at: dict[int, float]) -> float:
        """The longest a message this stream got took to arrive after it was acknowledged:
        how long the stream stood still while messages for it were waiting."""
        return max(
            (at - acked_at[m] for m, at in zip(self.received, self.arrivals, strict=True)
             if m in acked_at),
            default=0.0,
        )  # fmt: skip


@dataclass
class Chat:
    chat_id: str
    sender: int
    readers: list[int]
    acked: list[int] = field(default_factory=list)


@dataclass
class Attempt:
    began: float
    took: float
    status: int


def _answer(text: str) -> Any:
    """A JSON answer, or the text of one that is not (what a balancer answers itself is
    HTML), to be shown."""
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text[:300]}


class WebFollower(TimedFollower):
    """A browser's live stream: a WebSocket through the balancer, opened again with the last
    cursor it got whenever it ends, as the web client does."""

    URL = BFF.replace("http", "ws", 1) + "/v1/stream/ws"

    def __init__(self, clients: Clients, user: User) -> None:
        super().__init__(clients, user)
        self.cursor = ""
        #: How many times the socket ended and was opened again.
        self.reconnects = 0

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.clients.http.ws_connect(self.URL, heartbeat=5.0) as ws:
                    hello = {"type": "hello", "access_token": self.user.token}
                    await ws.send_json(hello | {"cursor": self.cursor})
                    async for frame in ws:
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            break
                        self._take(json.loads(frame.data))
            self.reconnects += 1
            await asyncio.sleep(0.5)

    def _take(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if event.get("cursor") and kind in ("message", "caught_up", "receipt"):
            self.cursor = event["cursor"]  # what the web client keeps (clients/web/app.js)
        is_message = kind == "message" and "change" not in event["message"]
        self._note(kind, int(event["message"]["message_id"]) if is_message else None, event)
        if kind == "error" and event.get("code") in ("UNAUTHENTICATED", "INVALID_ARGUMENT"):
            # The others (a backend away) close with 4500: reconnect with the cursor.
            raise AssertionError(f"the stream was refused for good: {event}")


class Load:
    """Senders that each retry one message with the same client_message_id until it is
    acknowledged, at about ``rate`` messages a second over all of them, in direct chats and
    groups with readers who never send: a reader's unread count in a chat is then exactly the
    chat's acknowledged messages. A sender moves to its next chat every ``PER_CHAT`` messages,
    so no chat nears what an unread count counts up to."""

    DIRECT_SENDERS = 10
    GROUP_SENDERS = 2
    READERS = 6
    PER_CHAT = 250
    #: How long one attempt may take before the client gives up on it (beyond the send path's
    #: own deadline: a send refused after its deadline is refused, not hung).
    ATTEMPT_TIMEOUT = 40.0

    def __init__(
        self,
        clients: Clients,
        rate: float = 100.0,
        follower: type[TimedFollower] = TimedFollower,
    ) -> None:
        self.clients = clients
        self.rate = rate
        #: How each user follows their stream: a mobile client's gRPC stream, or a browser's.
        self.follower = follower
        self.users: list[User] = []
        self.chats: list[Chat] = []
        self.followers: list[TimedFollower] = []
        self.attempts: list[Attempt] = []
        #: Time from a message's first attempt to its acknowledgement.
        self.to_ack: list[float] = []
        #: When each message was acknowledged.
        self.acked_at: dict[int, float] = {}
        #: Per sender, what its last attempt was told if it was refused (None once accepted).
        self.last_refusal: dict[int, Any] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        senders = self.DIRECT_SENDERS + self.GROUP_SENDERS
        users = [await self.clients.user("load") for _ in range(senders + self.READERS)]
        readers = list(range(senders, senders + self.READERS))
        by_sender: list[list[Chat]] = []
        for s in range(self.DIRECT_SENDERS):
            by_sender.append([Chat(await users[s].open_chat(users[r]), s, [r]) for r in readers])
        for s in range(self.DIRECT_SENDERS, senders):
            groups = []
            for k in range(self.READERS):
                members = [readers[(k + i) % self.READERS] for i in range(3)]
                status, body = await users[s].post(
                    "/v1/groups",
                    {
                        "name": f"load {s}.{k}",
                        "member_ids": [str(users[r].user_id) for r in members],
                        "client_request_id": uuid.uuid4().hex,
                    },
                )
                assert status == 201, body
                groups.append(Chat(str(body["chat_id"]), s, members))
            by_sender.append(groups)
        self.users = users
        self.chats = [chat for chats in by_sender for chat in chats]
        self.followers = [self.follower(self.clients, user) for user in users]
        for follower in self.followers:
            follower.start()
        for follower in self.followers:
            await asyncio.wait_for(follower.caught_up.wait(), 60)
        self._tasks = [asyncio.create_task(self._send(chats)) for chats in by_sender]

    async def _send(self, chats: list[Chat]) -> None:
        period = (self.DIRECT_SENDERS + self.GROUP_SENDERS) / self.rate
        timeout = aiohttp.ClientTimeout(total=self.ATTEMPT_TIMEOUT)
        sent = 0
        while not self._stop.is_set():
            chat = chats[min(sent // self.PER_CHAT, len(chats) - 1)]
            sender = self.users[chat.sender]
            first = time.monotonic()
            client_id = uuid.uuid4().hex
            while True:  # as a client does: the same message until it is accepted
                began = time.monotonic()
                try:
                    async with self.clients.http.post(
                        f"{BFF}/v1/chats/{chat.chat_id}/messages",
                        json={"client_message_id": client_id, "body": "load"},
                        headers=sender.auth,
                        timeout=timeout,
                    ) as response:
                        status = response.status
                        body = _answer(await response.text())
                except (aiohttp.ClientError, TimeoutError):
                    status, body = 0, None
                self.attempts.append(Attempt(began, time.monotonic() - began, status))
                self.last_refusal[chat.sender] = None if status in (200, 201) else body
                if status in (200, 201):
                    chat.acked.append(int(body["message_id"]))
                    self.acked_at[int(body["message_id"])] = time.monotonic()
                    self.to_ack.append(time.monotonic() - first)
                    sent += 1
                    break
                # Refused, clearly: the service is unavailable, did not answer in time (a
                # frozen server), or the connection failed. Retried with the same id.
                assert status in (0, 503, 504), (status, body)
                await asyncio.sleep(0.25)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - first)))

    async def stop(self, seconds: float = 180.0) -> None:
        """Stop sending new messages; each sender's last one is retried until acknowledged."""
        self._stop.set()
        done, pending = await asyncio.wait(self._tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        refusals = [body for body in self.last_refusal.values() if body is not None]
        assert not pending, (
            f"{len(pending)} senders still had no acknowledgement after {seconds}s; "
            f"last told: {refusals}"
        )
        for task in done:
            task.result()

    def acked(self) -> int:
        return sum(len(chat.acked) for chat in self.chats)

    def errors_between(self, start: float, end: float) -> list[Attempt]:
        return [a for a in self.attempts if a.status not in (200, 201) and start <= a.began <= end]

    async def account(self) -> Accounting:
        """Every acknowledged message on each member's stream once, in history once, counted
        once in each reader's unread count: what is missing and what is extra, everywhere."""
        found = Accounting()
        expected = [
            [
                m
                for chat in self.chats
                if index == chat.sender or index in chat.readers
                for m in chat.acked
            ]
            for index in range(len(self.followers))
        ]
        for follower, want in zip(self.followers, expected, strict=True):
            count = len(want)
            await _until(lambda f=follower, n=count: len(f.received) >= n)
        await asyncio.sleep(0.5)  # a duplicate would arrive right behind, on any stream
        for index, (follower, want) in enumerate(zip(self.followers, expected, strict=True)):
            found.compare(f"stream of user {index}", want, follower.received)
        for follower in self.followers:
            await follower.stop()
        # Each reader's history of each chat, read concurrently (a few at a time).
        pairs = [(chat, index) for chat in self.chats for index in chat.readers]
        gate = asyncio.Semaphore(HISTORY_READS_AT_ONCE)

        async def history(chat: Chat, index: int) -> list[tuple[int | None, int]]:
            async with gate:
                return await _stored(self.users[index], chat)

        histories = await asyncio.gather(*(history(chat, index) for chat, index in pairs))
        for (chat, index), entries in zip(pairs, histories, strict=True):
            found.compare(
                f"history of {chat.chat_id} for user {index}",
                chat.acked,
                [m for m, _ in entries if m is not None],
            )
        for index in sorted({index for _, index in pairs}):
            reader = self.users[index]
            theirs = [
                (chat, entries)
                for (chat, at), entries in zip(pairs, histories, strict=True)
                if at == index
            ]
            listed = await _listed_up_to(reader, [chat for chat, _ in theirs])
            for chat, entries in theirs:
                # A group's changes (its creation) by someone else count as unread too.
                changes = sum(1 for m, by in entries if m is None and by != reader.user_id)
                # (A chat its sender never got to may be missing from the list: none unread.)
                row = listed.get(chat.chat_id, {"unread_count": changes})
                unread = int(row["unread_count"]) - changes
                found.count(f"unread of user {index} in {chat.chat_id}", len(chat.acked), unread)
        return found


#: How many history reads the accounting makes at once.
HISTORY_READS_AT_ONCE = 8


async def _stored(reader: User, chat: Chat, seconds: float = 120.0) -> list[tuple[int | None, int]]:
    """The chat's history as the reader sees it, once it holds as many messages as were
    acknowledged, or when waiting is over (the history writer persists asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        entries = await all_entries(reader, chat.chat_id)
        stored = sum(1 for m, _ in entries if m is not None)
        if stored >= len(chat.acked) or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.5)


async def _listed_up_to(
    reader: User, chats: list[Chat], seconds: float = 120.0
) -> dict[str, dict[str, Any]]:
    """The reader's chat list, by chat, once each chat's row names the chat's newest
    acknowledged message (or a newer entry) as its last, or when waiting is over. The row
    comes from the reader's own copy of a message, which another history writer may write
    seconds after the message itself (one restarted by a fault reads on from its partitions'
    committed offsets): an unread count read before then is simply not current yet."""
    deadline = time.monotonic() + seconds
    while True:
        listed = {c["chat_id"]: c for c in (await read(reader, "/v1/chats"))["chats"]}
        behind = [
            chat
            for chat in chats
            if chat.acked
            and int((listed.get(chat.chat_id) or {}).get("last_message_id") or 0) < max(chat.acked)
        ]
        if not behind or time.monotonic() > deadline:
            return listed
        await asyncio.sleep(0.5)


async def _until(check: Any, seconds: float = 120.0) -> None:
    """Wait for ``check`` (sync or async) to hold, or ``seconds``: the accounting that follows
    says what is missing."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.5)


@dataclass
class Accounting:
    #: Acknowledged messages a second over the whole run (load, fault, healing).
    rate: float = 0.0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def compare(self, where: str, expected: list[int], got: list[int]) -> None:
        seen = Counter(got)
        missing = set(expected) - set(seen)
        extra = sum(n - 1 for n in seen.values()) + len(set(seen) - set(expected))
        self.lost += len(missing)
        self.duplicated += extra
        if missing or extra:
            self.problems.append(
                f"{where}: {len(missing)} acknowledged missing (e.g. {sorted(missing)[:3]}),"
                f" {extra} extra"
            )

    def count(self, where: str, expected: int, got: int) -> None:
        if expected >= UNREAD_CAP:
            self.problems.append(f"{where}: {expected} messages, beyond what unread counts")
        elif got < expected:
            self.lost += expected - got
            self.problems.append(f"{where}: {got}, expected {expected}")
        elif got > expected:
            self.duplicated += got - expected
            self.problems.append(f"{where}: {got}, expected {expected}")


#: How long the accounting asks again a read answered 503 or 504: a node the fault restarted
#: may still be slow (a cold Cassandra node), and a client retries those answers.
READ_RETRY_S = 60.0


async def read(user: User, path: str) -> dict[str, Any]:
    """``GET path`` as ``user``, asked again while it answers 503 or 504; any other answer
    than 200 fails."""
    deadline = time.monotonic() + READ_RETRY_S
    while True:
        status, body = await user.get(path)
        if status not in (503, 504) or time.monotonic() > deadline:
            assert status == 200, (path, status, body)
            return dict(body)
        await asyncio.sleep(1.0)


async def all_entries(user: User, chat: str, page: int = 200) -> list[tuple[int | None, int]]:
    """The chat's history as the user sees it, page by page: (message id, sender) for each
    message, and (None, actor) for each change (a group's creation)."""
    found: list[dict[str, Any]] = []
    before = ""
    while True:
        query = f"limit={page}" + (f"&before={before}" if before else "")
        entries = (await read(user, f"/v1/chats/{chat}/messages?{query}"))["messages"]
        found += entries
        if len(entries) < page:
            break
        before = entries[-1]["message_id"]
    return [
        (None, int(e["sender_id"]))
        if e.get("change")
        else (int(e["message_id"]), int(e["sender_id"]))
        for e in found
    ]


class Revocation:
    """A session logged out during a fault: once the logout is acknowledged, its token must
    never work again."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.user: User | None = None
        self.logged_out = False

    async def prepare(self) -> None:
        self.user = await self.clients.user("revoked")

    async def log_out(self, seconds: float = 120.0) -> None:
        """Log out, retrying until the BFF acknowledges it."""
        assert self.user is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                async with self.clients.http.delete(
                    f"{BFF}/v1/sessions/current", headers=self.user.auth
                ) as response:
                    if response.status == 204:
                        self.logged_out = True
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        raise AssertionError("the logout was never acknowledged")

    async def check(self) -> None:
        assert self.user is not None
        assert self.logged_out
        status, _ = await self.user.get("/v1/chats")
        assert status == 401, f"a revoked session works again ({status})"


@dataclass
class FaultRecord:
    fault: str
    #: "storage" (Kafka, Cassandra, Redis) or "service" (our own processes).
    tier: str
    seconds: float
    acked: int
    attempts: int
    refused: int
    longest_send_s: float
    longest_to_ack_s: float
    error_window_s: float
    longest_stream_pause_s: float
    #: Over the streams the fault touched (all of them unless the test says which): each
    #: one's longest wait for a message already acknowledged, p50 and p99.
    stream_pause_p50_s: float = 0.0
    stream_pause_p99_s: float = 0.0
    #: Of the streams the fault broke: from the fault to the stream caught up again (its
    #: first caught_up after the fault), p50, p99 and max, and how many there were.
    resumed_p50_s: float = 0.0
    resumed_p99_s: float = 0.0
    resumed_max_s: float = 0.0
    streams_resumed: int = 0
    #: Acknowledged messages a second over the whole run (load, fault, healing).
    rate: float = 0.0
    lost: int = 0
    duplicated: int = 0


#: This session's faults, in the order they ran.
RUN: list[dict[str, Any]] = []
RUN_STARTED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record(entry: FaultRecord) -> None:
    """Write this session's fault figures so far to ``cluster-faults.json`` in the benchmark
    results (``python -m bench keep cluster-faults`` keeps a full run for docs/benchmarks.md)."""
    from bench.__main__ import machine

    RUN.append(asdict(entry))
    folder = Path(os.environ.get("CHAT_BENCH_RESULTS", Layout.from_env().state / "bench-results"))
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "scenario": "cluster-faults",
        "command": "./dev test --cluster",
        "measured_at": RUN_STARTED,
        "machine": machine(),
        "result": {"faults": RUN},
    }
    (folder / "cluster-faults.json").write_text(json.dumps(payload, indent=1) + "\n")


#: Seconds of steady load before each fault and after its healing (300 messages at 100/s).
STEADY_S = 3.0


async def under_fault(
    name: str,
    load: Load,
    fault_seconds: float,
    inject: Any,
    heal: Any,
    revocation: Revocation | None = None,
    affected: Any = None,
    tier: str = "storage",
) -> FaultRecord:
    """Run the load, inject the fault, log a session out during it, heal, then account.
    ``affected`` (a user to bool) says which streams the fault touched; all by default."""
    await load.start()
    if revocation is not None:
        await revocation.prepare()
    await asyncio.sleep(STEADY_S)  # steady load before the fault
    began = time.monotonic()
    loaded = began - STEADY_S
    await inject()
    logout: asyncio.Task[None] | None = None
    if revocation is not None:
        await asyncio.sleep(min(3.0, fault_seconds / 2))
        logout = asyncio.create_task(revocation.log_out())
    await asyncio.sleep(max(0.0, fault_seconds - (time.monotonic() - began)))
    await heal()
    healed = time.monotonic()
    await every_service_ready(seconds=120)
    if logout is not None:
        await logout
    await asyncio.sleep(STEADY_S)  # steady again after healing
    await load.stop()
    ended = time.monotonic()
    accounting = await load.account()
    errors = load.errors_between(began, ended)
    window = (
        (max(a.began + a.took for a in errors) - min(a.began for a in errors)) if errors else 0.0
    )
    pauses = sorted(
        f.longest_lag(load.acked_at) for f in load.followers if affected is None or affected(f.user)
    ) or [0.0]
    resumed = sorted(
        min(t for t in f.caught_up_at if t > began) - began
        for f in load.followers
        if any(t > began for t in f.caught_up_at)
    ) or [0.0]
    entry = FaultRecord(
        fault=name,
        tier=tier,
        seconds=round(healed - began, 1),
        acked=load.acked(),
        attempts=len(load.attempts),
        refused=len([a for a in load.attempts if a.status not in (200, 201)]),
        longest_send_s=round(max(a.took for a in load.attempts), 2),
        longest_to_ack_s=round(max(load.to_ack), 2),
        error_window_s=round(window, 2),
        longest_stream_pause_s=round(max(f.longest_lag(load.acked_at) for f in load.followers), 2),
        stream_pause_p50_s=round(pauses[len(pauses) // 2], 2),
        stream_pause_p99_s=round(pauses[min(len(pauses) - 1, int(len(pauses) * 0.99))], 2),
        resumed_p50_s=round(resumed[len(resumed) // 2], 2),
        resumed_p99_s=round(resumed[min(len(resumed) - 1, int(len(resumed) * 0.99))], 2),
        resumed_max_s=round(resumed[-1], 2),
        streams_resumed=sum(1 for f in load.followers if any(t > began for t in f.caught_up_at)),
        rate=round(load.acked() / (ended - loaded), 1),
        lost=accounting.lost,
        duplicated=accounting.duplicated,
    )
    record(entry)
    assert not accounting.problems, "\n".join(accounting.problems[:20])
    if revocation is not None:
        await revocation.check()
    return entry
