"""A 300-member group of which a tenth is online: a group entry is one record per partition,
expanded by each fan-out to its online members, stored once, derived into each member's chat
list at read time, and notified once to each offline member."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import aiohttp
from confluent_kafka import Consumer, TopicPartition

from chatlib import deliveries
from chatlib.ids import timestamp_ms
from tests.e2e.conftest import (
    BFF,
    FOLLOWERS,
    PASSWORD,
    Admin,
    Clients,
    Receiver,
    User,
    applied_everywhere,
    each_received_once,
    eventually,
    follow,
    whole_history,
)

MEMBERS = 300
ONLINE = 30
TOPIC = "chat.deliveries.v1"
#: The single-node stack's partition count (``./dev up``).
PARTITIONS = 12


async def _register(http: aiohttp.ClientSession, count: int) -> list[tuple[str, int]]:
    """(username, id) of ``count`` new users, registered eight at a time."""
    gate = asyncio.Semaphore(8)
    counter = itertools.count()

    async def one() -> tuple[str, int]:
        name = f"big{next(counter)}x{id(gate) % 100_000}{asyncio.get_running_loop().time():.0f}"
        async with (
            gate,
            http.post(f"{BFF}/v1/users", json={"username": name, "password": PASSWORD}) as r,
        ):
            body = await r.json()
            assert r.status == 201, body
        return name, int(body["user_id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_a_big_group_reaches_online_members_once_and_offline_ones_later(
    clients: Clients, admin: Admin, receiver: Receiver
) -> None:
    await admin.change("auth", registrations_per_address=10_000)
    await _group_records_on(admin, True)
    owner = await clients.user("owner")
    speaker = await clients.user("speaker")
    registered = await _register(clients.http, MEMBERS - 2)
    online = [owner, speaker] + [await clients.login(name) for name, _ in registered[: ONLINE - 2]]
    offline_ids = [user_id for _, user_id in registered[ONLINE - 2 :]]
    followers = await follow(clients, online)
    status, group = await owner.post(
        "/v1/groups",
        {
            "name": "town square",
            "member_ids": [str(speaker.user_id)] + [str(u) for _, u in registered],
        },
    )
    assert status == 201, group
    chat = group["chat_id"]
    sent = [await owner.send(chat, f"announcement {n}") for n in range(4)]
    sent += [await speaker.send(chat, f"reply {n}") for n in range(2)]

    # History holds the creation and the six messages, once each (the writer follows the log
    # a moment behind).
    async def stored() -> list[int] | None:
        found = [int(m["message_id"]) for m in reversed(await whole_history(owner, chat))]
        return found if len(found) >= 7 else None

    entries = await eventually(stored)
    assert entries[1:] == sent, entries
    # The log holds each message once per partition holding members, not once per member.
    records = await asyncio.to_thread(_group_records, chat, sent[0])
    assert 1 < len(records) <= PARTITIONS
    assert sorted(m for r in records for m in r.recipient_ids) == sorted(
        [owner.user_id, speaker.user_id] + [u for _, u in registered]
    )
    assert [r.primary for r in records].count(True) == 1
    # Every online member's stream got every entry once.
    await each_received_once(followers, {chat: entries}, {chat: set(range(ONLINE))})

    # Offline members come back: their chat list shows the group's last message and every
    # entry of their window (the creation included) unread.
    for name, _ in registered[ONLINE - 2 :: 45]:
        member = await clients.login(name)
        row = await _row(member, chat)
        assert (row["name"], row["last_message_id"], row["unread_count"]) == (
            "town square",
            str(sent[-1]),
            7,
        ), row
    # A sender has read up to what they sent.
    assert (await _row(owner, chat))["unread_count"] == 2  # the speaker's replies
    assert (await _row(speaker, chat))["unread_count"] == 0

    # The notifier told each offline member of every entry once (in one burst or a few), and
    # nobody online, nor the senders.
    async def everyone_told() -> bool:
        told = Counter(c["recipient_id"] for c in receiver.calls)
        return all(told[str(u)] for u in offline_ids)

    await eventually(everyone_told, seconds=60)
    await asyncio.sleep(3.0)  # a second notification of anything would come now
    by_recipient: dict[str, list[str]] = {}
    for call in receiver.calls:
        if call["chat_id"] == chat:
            by_recipient.setdefault(call["recipient_id"], []).extend(call["message_ids"])
    assert set(by_recipient) == {str(u) for u in offline_ids}
    for recipient, ids in by_recipient.items():
        assert sorted(ids) == sorted(str(e) for e in entries), recipient


async def test_with_group_records_off_a_group_message_is_a_copy_per_member(
    clients: Clients, admin: Admin
) -> None:
    """The upgrade switch: while it is off, messaging writes what older readers understand,
    and streams, history and chat lists are the same; turned on, the next message is one
    record per partition."""
    await _group_records_on(admin, False)
    owner, speaker = await clients.user("owner"), await clients.user("speaker")
    away = [user_id for _, user_id in await _register(clients.http, 6)]
    followers = await follow(clients, [owner, speaker])
    status, group = await owner.post(
        "/v1/groups", {"name": "upgrade", "member_ids": [str(speaker.user_id), *map(str, away)]}
    )
    assert status == 201, group
    chat = group["chat_id"]
    members = sorted([owner.user_id, speaker.user_id, *away])
    copies = await owner.send(chat, "while off")
    records = await asyncio.to_thread(_records, chat, copies)
    assert sorted(r.recipient_id for _, r in records) == members
    assert not any(deliveries.is_group_key(key) for key, _ in records)
    assert [r.primary for _, r in records].count(True) == 1

    await _group_records_on(admin, True)
    grouped = await owner.send(chat, "once on")
    records = await asyncio.to_thread(_records, chat, grouped)
    assert all(key == deliveries.group_key(chat) for key, _ in records)
    assert sorted(m for _, r in records for m in r.recipient_ids) == members

    async def stored() -> list[int] | None:
        found = [int(m["message_id"]) for m in reversed(await whole_history(owner, chat))]
        return found if len(found) >= 3 else None

    entries = await eventually(stored)
    assert entries[1:] == [copies, grouped]
    await each_received_once(followers, {chat: entries}, {chat: {0, 1}})
    row = await _row(await clients.login(speaker.username), chat)
    assert (row["last_message_id"], row["unread_count"]) == (str(grouped), 3), row


async def _group_records_on(admin: Admin, on: bool) -> None:
    changed = await admin.change("features", group_records=on)
    await applied_everywhere("features", changed["version"], FOLLOWERS["features"])


def _group_records(chat: str, message_id: int) -> list[deliveries.Delivery]:
    return [r for key, r in _records(chat, message_id) if key == deliveries.group_key(chat)]


def _records(chat: str, message_id: int) -> list[tuple[bytes, deliveries.Delivery]]:
    """The records of ``message_id`` in the deliveries topic (read from a little before it),
    with their keys."""
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9092", "group.id": "test-big-group"})
    since = timestamp_ms(message_id) - 5_000
    found = []
    try:
        starts = consumer.offsets_for_times(
            [TopicPartition(TOPIC, p, since) for p in range(PARTITIONS)], 10
        )
        for start in starts:
            _, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, start.partition), 10)
            consumer.assign([start])
            position = start.offset if start.offset >= 0 else high
            while position < high:
                for record in consumer.consume(500, 1.0):
                    if record.error() is not None or record.partition() != start.partition:
                        continue
                    position = (record.offset() or 0) + 1
                    delivery = deliveries.decode(record.value())
                    if delivery.message_id == message_id and delivery.chat_id == chat:
                        found.append((record.key() or b"", delivery))
            consumer.unassign()
    finally:
        consumer.close()
    return found


async def _row(user: User, chat: str) -> dict[str, Any]:
    [row] = [c for c in await user.chats() if c["chat_id"] == chat]
    return row
