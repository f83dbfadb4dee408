"""A slow stream is cut loose with a resume cursor and never holds up others; a bad record is
dead-lettered with its error and never stops the history writer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import Clients, User, eventually

FLOOD = 2000
# The flood comes from several senders: one user alone would hit the per-user send rate limit
# (limits.send_burst) long before bob's queue fills.
SENDERS = 25
# Big enough that gRPC's own buffers (flow-control windows grow to megabytes) fill up first and
# the server-side queue of the stream is what overflows.
PADDING = "x" * 3500
DELIVERIES = "chat.deliveries.v1"
DEAD_LETTERS = "chat.deliveries.dlq.v1"
BOOTSTRAP = "127.0.0.1:9092"


async def _read(call: Any) -> messaging_pb2.ClientEvent:
    event = await call.read()
    assert isinstance(event, messaging_pb2.ClientEvent), event
    return event


async def _user_on(clients: Clients, server: str) -> User:
    for _ in range(50):
        user = await clients.user("peer")
        if user.messaging_server == server:
            return user
    raise AssertionError(f"no user routed to {server} in 50 tries")


async def test_a_slow_stream_ends_with_a_cursor_and_others_keep_flowing(clients: Clients) -> None:
    bob = await clients.user("bob")
    senders = [await clients.user("flood") for _ in range(SENDERS)]
    bob_chats = [await sender.open_chat(bob) for sender in senders]
    carol = await _user_on(clients, bob.messaging_server)  # shares bob's server and fan-out
    dave = await clients.user("dave")
    carol_chat = await dave.open_chat(carol)

    # Bob subscribes and then does not read at all.
    slow = clients.stub(bob.messaging_server).Subscribe(
        messaging_pb2.SubscribeRequest(), metadata=(("authorization", f"Bearer {bob.token}"),)
    )
    clients.calls.append(slow)
    first = await _read(slow)
    assert first.WhichOneof("event") == "caught_up"
    carol_stream = await clients.subscribe(carol)
    await carol_stream.caught_up()

    gate = asyncio.Semaphore(16)

    async def send(n: int) -> int:
        async with gate:
            return await senders[n % SENDERS].send(bob_chats[n % SENDERS], f"flood {n} {PADDING}")

    flood = asyncio.gather(*(send(n) for n in range(FLOOD)))
    # While bob's stream is stuck, carol still gets hers, one after the other.
    for n in range(5):
        sent = await dave.send(carol_chat, f"for carol {n}")
        [event] = await carol_stream.messages(1)
        assert event.message.message_id == sent
    sent_ids = set(await flood)

    received: list[int] = []
    last_cursor = ""
    while True:
        event = await asyncio.wait_for(_read(slow), 30)
        kind = event.WhichOneof("event")
        if kind == "message":
            received.append(event.message.message_id)
            last_cursor = event.cursor
        elif kind == "resume_required":
            assert event.cursor == last_cursor
            break
    assert 0 < len(received) < FLOOD

    resumed = await clients.subscribe(bob, last_cursor)
    rest = await resumed.messages(FLOOD - len(received), seconds=60)
    everything = received + [e.message.message_id for e in rest]
    assert len(everything) == len(set(everything)) == FLOOD
    assert set(everything) == sent_ids


async def test_an_undecodable_record_is_dead_lettered_and_writing_goes_on(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    marker = uuid.uuid4().hex.encode()

    watcher = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"dlq-test-{marker.decode()}"})
    _, high = await asyncio.to_thread(
        watcher.get_watermark_offsets, TopicPartition(DEAD_LETTERS, 0), 10.0, False
    )
    watcher.assign([TopicPartition(DEAD_LETTERS, 0, high)])
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    producer.produce(
        DELIVERIES, key=marker, value=b"\xff\xfe not a protobuf " + marker, partition=0
    )
    assert producer.flush(10) == 0

    after = await alice.send(chat_id, "written after the bad record")

    async def dead_lettered() -> list[tuple[str, bytes | str | None]] | None:
        for record in await asyncio.to_thread(watcher.consume, 10, 1.0):
            if record.error() is None and record.key() == marker:
                found = record.headers() or []
                assert isinstance(found, list)
                return found
        return None

    try:
        headers = dict(await eventually(dead_lettered, seconds=30))
    finally:
        watcher.close()
    assert bytes(headers["dlq.error"] or b"").startswith(b"not a Delivery: ")
    assert headers["dlq.topic"] == DELIVERIES.encode()
    assert headers["dlq.partition"] == b"0"

    async def persisted() -> bool:
        return any(m["message_id"] == str(after) for m in await bob.history(chat_id))

    await eventually(persisted)
