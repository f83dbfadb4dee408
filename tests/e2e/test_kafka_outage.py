"""Kafka goes away under load: every acknowledged message is delivered, stored and counted
exactly once, however often clients retried while the broker was down."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from infra import stack
from infra.layout import Layout
from infra.services import Context
from infra.services.kafka import Kafka
from tests.e2e.conftest import (
    Clients,
    User,
    each_received_once,
    eventually,
    follow,
    whole_history,
)

#: Messages per second over all senders, and how long the broker stays down.
RATE = 50
OUTAGE_SECONDS = 45
SENDERS = 4
WRITER_OPS = 9302
#: The ops ports of the services that cannot work without Kafka: both messaging servers
#: (sends, live delivery) and the history writer.
KAFKA_USERS = (9311, 9312, WRITER_OPS)


@pytest.mark.timeout(400)
async def test_a_kafka_outage_under_load_duplicates_nothing(clients: Clients) -> None:
    # Each chat has one sender and one reader, so the reader's unread count is known exactly:
    # every message of the chat.
    users = [await clients.user("kafkaout") for _ in range(2 * SENDERS)]
    chats = [await users[2 * n].open_chat(users[2 * n + 1]) for n in range(SENDERS)]
    members = {chat: {2 * n, 2 * n + 1} for n, chat in enumerate(chats)}
    followers = await follow(clients, users)

    acked: dict[str, list[int]] = {chat: [] for chat in chats}
    attempts = refused = 0
    stop = asyncio.Event()

    async def keep_sending(sender: User, chat: str) -> None:
        nonlocal attempts, refused
        while not stop.is_set():
            began = time.monotonic()
            client_id = uuid.uuid4().hex
            while True:  # as a client does: retry the same message until it is accepted
                attempts += 1
                try:
                    status, body = await sender.post(
                        f"/v1/chats/{chat}/messages", {"client_message_id": client_id, "body": "k"}
                    )
                except (aiohttp.ClientError, TimeoutError):
                    status, body = 0, None
                if status in (200, 201):
                    acked[chat].append(int(body["message_id"]))
                    break
                assert status in (0, 503), body
                refused += 1
                await asyncio.sleep(0.2)
            await asyncio.sleep(max(0.0, SENDERS / RATE - (time.monotonic() - began)))

    senders = [asyncio.create_task(keep_sending(users[2 * n], chats[n])) for n in range(SENDERS)]
    ctx = Context(Layout.from_env())
    try:
        await asyncio.sleep(3)
        assert await _readiness() == dict.fromkeys(KAFKA_USERS, 200)
        await asyncio.to_thread(stack.down, ctx, [Kafka()])
        outage_ends = asyncio.get_running_loop().time() + OUTAGE_SECONDS
        # Every service that needs Kafka says so while it is away...
        await eventually(_all_status(503), seconds=OUTAGE_SECONDS - 5)
        await asyncio.sleep(max(0.0, outage_ends - asyncio.get_running_loop().time()))
        await asyncio.to_thread(stack.up, ctx, [Kafka()])
        # ...and is ready again once it is back.
        await eventually(_all_status(200), seconds=60)
        await asyncio.sleep(5)
    finally:
        stop.set()
        outcomes = await asyncio.gather(*senders, return_exceptions=True)
        await asyncio.to_thread(stack.up, ctx, [Kafka()])  # whatever happened above
    for outcome in outcomes:
        if outcome is not None:
            raise outcome
    assert refused > 0, "the outage never reached a sender"
    assert attempts > sum(len(ids) for ids in acked.values()), "nobody had to retry"

    # Streams: every acknowledged message once per member, no duplicate.
    await each_received_once(followers, acked, members)

    # History: each chat holds exactly its acknowledged messages, each once.
    for n, chat in enumerate(chats):
        reader = users[2 * n + 1]

        async def stored(chat: str = chat, reader: User = reader) -> list[int] | None:
            found = await _all_messages(reader, chat)
            return found if len(found) >= len(acked[chat]) else None

        found = await eventually(stored, seconds=60)
        assert sorted(found) == sorted(acked[chat]), f"chat {n}"

    # Unread counts: the reader never sent, so every message counts, and each only once.
    for n, chat in enumerate(chats):
        listed = {c["chat_id"]: c for c in await users[2 * n + 1].chats()}
        assert listed[chat]["unread_count"] == len(acked[chat]), f"chat {n}"
        assert listed[chat]["last_message_id"] == str(max(acked[chat]))

    # The history writer lived through it.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{WRITER_OPS}/readyz") as response,
    ):
        assert response.status == 200, await response.text()


async def _readiness() -> dict[int, int]:
    statuses = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for port in KAFKA_USERS:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                statuses[port] = response.status
    return statuses


def _all_status(status: int) -> Any:
    async def check() -> bool:
        return set((await _readiness()).values()) == {status}

    return check


async def _all_messages(user: User, chat: str) -> list[int]:
    return [int(m["message_id"]) for m in await whole_history(user, chat)]
