"""The send path as messaging wires it, against the real Redis, Kafka and Cassandra: retries,
concurrent duplicates and the in-flight bookkeeping."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from confluent_kafka import TopicPartition

import history
import messaging
from chatlib import cassandra, deliveries, migrations
from chatlib.config_sections import DEFAULT_FEATURES, DEFAULT_LIMITS, Features, Limits
from chatlib.ids import Snowflake
from chatlib.kafka import AsyncProducer, ensure_topic, fetch, reader
from chatlib.leases import WorkerLease
from chatlib.live_config import Document, LiveSection
from chatlib.ownership import LeaseKeys
from chatlib.partitioning import Partitioning
from chatlib.redis_wire import RedisWire
from chatlib.settings import KafkaAccess
from messaging.chats import ChatDirectory
from messaging.groups.fence import Fence
from messaging.groups.store import GroupStore
from messaging.history_api import HistoryApi
from messaging.send.admission import Admission
from messaging.send.hold import SendHold
from messaging.send.sender import Sender
from messaging.send.settle import Settler
from protos.chat.v1.history_pb2_grpc import HistoryServiceStub
from tests.integration.conftest import REPLICATION, Endpoints

PARTITIONS = 4


@dataclass
class Wired:
    sender: Sender
    topic: str
    chat_id: str
    members: tuple[int, int]
    placement: LiveSection[Partitioning]
    redis: aioredis.Redis
    #: Where this sender's hold says it holds its sends.
    held_key: str


def _section(name: str, parser: Callable[[Any], Any], value: object) -> LiveSection[Any]:
    section: LiveSection[Any] = LiveSection(name, parser)
    section.offer(Document(name, 1, value, "test", "now"))
    return section


@pytest.fixture
async def wired(endpoints: Endpoints, unique: str) -> AsyncIterator[Wired]:
    topic = f"{unique}.deliveries"
    await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, PARTITIONS, 1, {})
    cluster, session = cassandra.connect(endpoints.cassandra)
    for owner, folder in (("history", history.MIGRATIONS), ("messaging", messaging.MIGRATIONS)):
        migrations.apply(session, unique, REPLICATION, owner, folder)
    a, b = sorted(uuid.uuid4().int >> 66 for _ in range(2))
    chat_id = f"d:{a}:{b}"
    session.execute(
        f"INSERT INTO {unique}.chats (chat_id, kind, member_ids) VALUES (%s, 'direct', %s)",
        (chat_id, {a, b}),
    )
    redis = aioredis.Redis.from_url(endpoints.redis_url)
    wire = RedisWire(endpoints.redis)
    lease = WorkerLease(redis)
    await lease.acquire()
    producer = AsyncProducer(endpoints.kafka.config())
    admission = Admission(wire)
    settler = Settler(producer, admission, endpoints.kafka, topic)
    partitioning = {
        "partitions": PARTITIONS,
        "servers": [{"name": "m1", "address": "grpc://127.0.0.1:1", "ranges": [[0, 3]]}],
    }
    db = cassandra.AsyncSession(session, unique)
    # The directory asks history only to open direct chats, which these tests never do.
    history_channel = grpc.aio.insecure_channel("127.0.0.1:1")
    placement = _section("partitioning", Partitioning.parse, partitioning)
    keys = LeaseKeys(unique)
    hold = SendHold(placement, redis, "m1", keys)
    sender = Sender(
        producer,
        admission,
        redis,
        ChatDirectory(db, GroupStore(db), HistoryApi(HistoryServiceStub(history_channel), "-")),
        Fence(wire),
        Snowflake(lease.check),
        lease,
        settler,
        limits=_section("limits", Limits.parse, DEFAULT_LIMITS.to_value()),
        features=_section("features", Features.parse, DEFAULT_FEATURES.to_value()),
        partitioning=placement,
        hold=hold,
        topic=topic,
    )
    try:
        yield Wired(sender, topic, chat_id, (a, b), placement, redis, keys.held("m1"))
    finally:
        await hold.close()
        await history_channel.close()
        producer.close()
        settler.close()
        await lease.release()
        wire.close()
        await redis.aclose()
        session.execute(f"DROP KEYSPACE IF EXISTS {unique}")
        cluster.shutdown()


async def _settled(sender: Sender) -> None:
    for _ in range(100):
        if sender.in_flight() == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{sender.in_flight()} sends still in flight")


async def test_retries_and_concurrent_duplicates_make_one_message_and_leave_nothing_behind(
    wired: Wired, endpoints: Endpoints
) -> None:
    a, b = wired.members
    # Ten identical sends at once, then a retry after the first was acknowledged.
    first = await asyncio.gather(
        *(wired.sender.send(a, wired.chat_id, "same", "hello") for _ in range(10))
    )
    assert len({accepted.message_id for accepted in first}) == 1
    assert sum(not accepted.duplicate for accepted in first) == 1
    await _settled(wired.sender)
    again = await wired.sender.send(a, wired.chat_id, "same", "hello")
    assert (again.message_id, again.duplicate) == (first[0].message_id, True)
    await _settled(wired.sender)  # a retry answered from the claim leaves nothing behind
    other = await wired.sender.send(a, wired.chat_id, "another", "hello again")
    assert other.message_id != first[0].message_id
    await _settled(wired.sender)

    copies = await asyncio.to_thread(_read, endpoints.kafka, wired.topic)
    assert Counter(copies) == Counter(
        {
            (first[0].message_id, a): 1,
            (first[0].message_id, b): 1,
            (other.message_id, a): 1,
            (other.message_id, b): 1,
        }
    )


def _read(kafka: KafkaAccess, topic: str) -> list[tuple[int, int]]:
    consumer = reader(kafka, "test-sender")
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    found: list[tuple[int, int]] = []
    ended = 0
    try:
        while ended < PARTITIONS:
            for record in fetch(consumer, 100, 5.0):
                if record.error() is not None:
                    ended += 1
                    continue
                delivery = deliveries.decode(record.value())
                found.append((delivery.message_id, delivery.recipient_id))
    finally:
        consumer.close()
    return found


async def test_held_sends_wait_unproduced_until_released_and_the_server_says_it_holds(
    wired: Wired, endpoints: Endpoints
) -> None:
    a, _ = wired.members
    value = wired.placement.get().to_value()
    wired.placement.offer(Document("partitioning", 2, value | {"hold_sends": True}, "t", "now"))
    sending = asyncio.create_task(wired.sender.send(a, wired.chat_id, "held", "wait"))
    for _ in range(100):  # nothing in flight: the server says so at once
        if await wired.redis.get(wired.held_key) == b"2":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the server never said it holds its sends")
    await asyncio.sleep(0.5)
    assert not sending.done()
    assert await asyncio.to_thread(_read, endpoints.kafka, wired.topic) == []
    wired.placement.offer(Document("partitioning", 3, value, "t", "now"))
    accepted = await asyncio.wait_for(sending, 10)
    await _settled(wired.sender)
    copies = await asyncio.to_thread(_read, endpoints.kafka, wired.topic)
    assert Counter(copies) == Counter({(accepted.message_id, m): 1 for m in wired.members})
