"""A messaging server dies (SIGKILL) while Kafka is down and its sends are in flight: once both
are back, every retry is answered with the message's first id within the bound
``docs/architecture.md`` states, and nothing is written twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import pytest

from chatlib.ids import timestamp_ms
from infra import apps, processes, stack
from infra.catalog import APPS
from infra.layout import Layout
from infra.services import Context
from infra.services.kafka import Kafka
from messaging.send.settle import SETTLE_SECONDS
from tests.e2e.conftest import Clients, User, each_received_once, eventually, follow

SENDERS = 4
#: Each sender's pause between messages (about 10 messages per second together).
PAUSE = 0.4
#: The worker lease's TTL (chatlib/leases.py): a dead server's lease is gone this long after.
LEASE_SECONDS = 15.0
#: What settling itself takes once it may start (reading the recipients' partitions, producing
#: what is missing), and a margin for a loaded test machine.
SETTLE_WORK_SECONDS = 15.0


@dataclass
class Sent:
    client_id: str
    first_try: float
    acked_at: float = 0.0
    message_id: int = 0
    tries: int = 0


@dataclass
class Sender:
    user: User
    chat: str
    sent: list[Sent] = field(default_factory=list)


def server_of(address: str) -> str:
    port = address.rsplit(":", 1)[1]
    [app] = [a for a in APPS if a.env.get("CHAT_MESSAGING_PORT") == port]
    return app.name


@pytest.mark.timeout(600)
async def test_retries_of_a_dead_servers_sends_are_settled_within_the_bound(
    clients: Clients,
) -> None:
    ctx = Context(Layout.from_env())
    # Senders whose partitions belong to one server (the victim); their peers anywhere.
    victim = ""
    senders: list[Sender] = []
    peers: list[User] = []
    while len(senders) < SENDERS:
        user = await clients.user("settle")
        victim = victim or user.messaging_server
        if user.messaging_server != victim:
            continue
        peer = await clients.user("settled")
        senders.append(Sender(user, await user.open_chat(peer)))
        peers.append(peer)
    followers = await follow(clients, peers)
    stop = asyncio.Event()

    async def keep_sending(sender: Sender) -> None:
        while not stop.is_set():
            message = Sent(uuid.uuid4().hex, time.monotonic())
            sender.sent.append(message)
            while True:  # as a client does: the same message until it is accepted
                message.tries += 1
                try:
                    status, body = await sender.user.post(
                        f"/v1/chats/{sender.chat}/messages",
                        {"client_message_id": message.client_id, "body": "settle me"},
                    )
                except (aiohttp.ClientError, TimeoutError):
                    status, body = 0, None
                if status in (200, 201):
                    message.message_id = int(body["message_id"])
                    message.acked_at = time.monotonic()
                    break
                assert status in (0, 503), body
                await asyncio.sleep(0.5)
            await asyncio.sleep(PAUSE)

    tasks = [asyncio.create_task(keep_sending(s)) for s in senders]
    name = server_of(victim)
    try:
        await asyncio.sleep(2)
        await asyncio.to_thread(stack.down, ctx, [Kafka()])
        await asyncio.sleep(6)  # sends pile up in the victim's producer
        running = processes.alive(ctx.layout.pidfile(name))
        assert running is not None, f"{name} is not running"
        os.kill(running.pid, signal.SIGKILL)
        killed_at, killed_wall_ms = time.monotonic(), time.time() * 1000
        await asyncio.sleep(3)
        await asyncio.to_thread(stack.up, ctx, [Kafka()])
        await asyncio.to_thread(apps.start, ctx, {name})
        back_at = time.monotonic()

        async def settled() -> bool:
            return all(m.acked_at for s in senders for m in s.sent if m.first_try < back_at)

        await eventually(settled, seconds=SETTLE_SECONDS + LEASE_SECONDS + 60)
        await asyncio.sleep(2)
    finally:
        stop.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(stack.up, ctx, [Kafka()])
        await asyncio.to_thread(apps.up, ctx)
    for outcome in outcomes:
        if outcome is not None:
            raise outcome

    in_flight = [m for s in senders for m in s.sent if m.first_try < killed_at and m.tries > 1]
    orphans = [m for m in in_flight if timestamp_ms(m.message_id) < killed_wall_ms]
    assert orphans, "no send was in flight on the server when it died"
    # Each is answered with the id its first attempt was given (minted before the death),
    # within the bound: the later of SETTLE_SECONDS after that attempt and the lease's TTL
    # after the death, counted from when Kafka and the server were back at the latest.
    for message in orphans:
        due = max(message.first_try + SETTLE_SECONDS, killed_at + LEASE_SECONDS, back_at)
        print(
            f"settled {message.client_id}: first try {message.first_try - killed_at:+.1f} s,"
            f" answered {message.acked_at - killed_at:+.1f} s from the death, due"
            f" {due - killed_at:+.1f} s, {message.tries} tries"
        )
        assert message.acked_at <= due + SETTLE_WORK_SECONDS, (
            f"{message.client_id} answered {message.acked_at - due:.1f} s after it was due"
        )
    # Nothing twice: each acknowledged message once on its recipient's stream and in history.
    acked = {s.chat: [m.message_id for m in s.sent if m.acked_at] for s in senders}
    members = {s.chat: {n} for n, s in enumerate(senders)}
    await each_received_once(followers, acked, members)
    for sender, peer in zip(senders, peers, strict=True):

        async def stored(chat: str = sender.chat, peer: User = peer) -> list[int] | None:
            found = [int(m["message_id"]) for m in await peer.history(chat, limit="200")]
            return found if len(found) >= len(acked[chat]) else None

        found = await eventually(stored, seconds=60)
        assert sorted(found) == sorted(acked[sender.chat])
