"""Half of the partitions change owners while ten clients send: every acknowledged message
reaches each member's stream exactly once (across redirects and resumes) and is in history
exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from chatlib.hashing import partition_for
from tests.e2e.conftest import Admin, Clients, User, each_received_once, eventually, follow

CLIENTS = 10
PARTITIONS = 12
SEND_EVERY = 0.1  # seconds per client: 100 messages per second in all


def fanout_positions() -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:9092", "group.id": "messaging-fanout"})
    try:
        found = consumer.committed(
            [TopicPartition("chat.deliveries.v1", p) for p in range(PARTITIONS)], 10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def swapped(value: dict[str, Any]) -> tuple[dict[str, Any], set[int]]:
    """m1 gives 3-5 to m2 and m2 gives 9-11 to m1: six of the twelve partitions move."""
    servers = {s["name"]: s for s in value["servers"]}
    assert servers["m1"]["ranges"] == [[0, 5]], value
    assert servers["m2"]["ranges"] == [[6, 11]], value
    moved = {
        "partitions": value["partitions"],
        "servers": [
            servers["m1"] | {"ranges": [[0, 2], [9, 11]]},
            servers["m2"] | {"ranges": [[3, 8]]},
        ],
    }
    return moved, {3, 4, 5, 9, 10, 11}


async def users_across(clients: Clients, moving: set[int]) -> list[User]:
    """Ten users, six in moving partitions and four in staying ones."""
    want = {True: 6, False: 4}
    found: list[User] = []
    while len(found) < CLIENTS:
        user = await clients.user("mover")
        moves = partition_for(user.user_id, PARTITIONS) in moving
        if want[moves]:
            want[moves] -= 1
            found.append(user)
    return found


async def test_half_the_partitions_move_while_ten_clients_send(
    clients: Clients, admin: Admin
) -> None:
    moved_config, moving = swapped((await admin.get("partitioning"))["value"])
    users = await users_across(clients, moving)
    # A ring of direct chats: user i talks to user i+1, so every user is in two chats.
    chats = [await users[i].open_chat(users[(i + 1) % CLIENTS]) for i in range(CLIENTS)]
    members = {chats[i]: {i, (i + 1) % CLIENTS} for i in range(CLIENTS)}
    followers = await follow(clients, users)

    acked: dict[str, list[int]] = {chat: [] for chat in chats}
    stop = asyncio.Event()

    acked_at: dict[int, list[float]] = {i: [] for i in range(CLIENTS)}

    async def keep_sending(i: int) -> None:
        while not stop.is_set():
            message_id = await users[i].send(chats[i], f"from {i}", client_id=uuid.uuid4().hex)
            acked[chats[i]].append(message_id)
            acked_at[i].append(time.monotonic())
            await asyncio.sleep(SEND_EVERY)

    senders = [asyncio.create_task(keep_sending(i)) for i in range(CLIENTS)]
    try:
        await asyncio.sleep(3)
        status, body = await admin.put("partitioning", moved_config)
        assert status == 200, body
        moved_at = time.monotonic()
        await asyncio.sleep(4)
    finally:
        stop.set()
        await asyncio.gather(*senders)

    await each_received_once(followers, acked, members)
    # Every client kept sending through the move: acknowledged sends on both sides of it.
    for i, times in acked_at.items():
        assert min(times) < moved_at - 1, i
        assert max(times) > moved_at + 1, i
    # The moved users were redirected to their partitions' new owners; the others were not.
    new_owner = {p: ("m2" if p < 6 else "m1") for p in moving}
    for user, follower in zip(users, followers, strict=True):
        partition = partition_for(user.user_id, PARTITIONS)
        if partition in moving:
            assert follower.redirects == [new_owner[partition]], (partition, follower.redirects)
        else:
            assert follower.redirects == [], (partition, follower.redirects)

    # Every partition has a position in the group the servers share: where a new owner starts.
    committed = await asyncio.to_thread(fanout_positions)
    assert sorted(committed) == list(range(PARTITIONS)), committed

    for chat, ids in acked.items():
        reader = users[min(members[chat])]

        async def complete(chat: str = chat, want: int = len(ids), reader: User = reader) -> Any:
            page = await reader.history(chat, limit="200")
            return page if len(page) >= want else None

        page = await eventually(complete)
        assert sorted(int(m["message_id"]) for m in page) == sorted(ids), chat
