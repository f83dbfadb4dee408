"""The send path's adapters against the real Redis and Kafka: admission (claims and the rate
limit), the hot-path Redis client, and settling a message whose earlier attempt is uncertain."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, TopicPartition

from chatlib import deliveries
from chatlib.errors import ResourceExhausted, Unavailable
from chatlib.hashing import partition_for
from chatlib.ids import EPOCH_MS, TIME_SHIFT
from chatlib.kafka import AsyncProducer, Record, ensure_topic, fetch
from chatlib.partitioning import Era, Partitioning, Server
from chatlib.redis_wire import RedisUnavailable, RedisWire
from chatlib.settings import KafkaAccess, RedisAccess
from messaging.send.admission import Admission, Owner
from messaging.send.settle import SETTLE_SECONDS, Settler
from tests.integration.conftest import Endpoints
from tests.tcp_proxy import CuttableProxy

ME = Owner(1, "me")
OTHER = Owner(2, "other")


@pytest.fixture
async def wire(endpoints: Endpoints) -> AsyncIterator[RedisWire]:
    client = RedisWire(endpoints.redis, timeout=0.5)
    yield client
    client.close()


def _sender() -> int:
    return uuid.uuid4().int >> 66


async def test_a_retry_gets_the_first_claim_and_another_chat_is_another_message(
    wire: RedisWire,
) -> None:
    admission = Admission(wire)
    sender = _sender()
    first = await admission.admit(
        sender, "d:1:2", "c1", new_id=100, owner=ME, rate_per_second=10, burst=10
    )
    assert (first.new, first.acknowledged, first.message_id, first.owner) == (True, False, 100, ME)
    retry = await admission.admit(
        sender, "d:1:2", "c1", new_id=101, owner=OTHER, rate_per_second=10, burst=10
    )
    assert (retry.new, retry.acknowledged, retry.message_id, retry.owner) == (False, False, 100, ME)
    await admission.acknowledge([first])
    again = await admission.admit(
        sender, "d:1:2", "c1", new_id=102, owner=ME, rate_per_second=10, burst=10
    )
    assert (again.acknowledged, again.message_id) == (True, 100)
    elsewhere = await admission.admit(
        sender, "d:1:3", "c1", new_id=103, owner=ME, rate_per_second=10, burst=10
    )
    assert (elsewhere.new, elsewhere.message_id) == (True, 103)


async def test_the_rate_limit_counts_messages_not_retries(wire: RedisWire) -> None:
    admission = Admission(wire)
    sender = _sender()
    claims = [
        await admission.admit(
            sender, "d:1:2", f"m{n}", new_id=n + 1, owner=ME, rate_per_second=0.01, burst=3
        )
        for n in range(3)
    ]
    assert all(claim.new for claim in claims)
    with pytest.raises(ResourceExhausted, match="rate limit") as refused:
        await admission.admit(
            sender, "d:1:2", "m3", new_id=9, owner=ME, rate_per_second=0.01, burst=3
        )
    assert refused.value.retry_after_ms > 0
    retry = await admission.admit(
        sender, "d:1:2", "m0", new_id=10, owner=ME, rate_per_second=0.01, burst=3
    )
    assert (retry.new, retry.message_id) == (False, 1)


async def test_a_claim_is_taken_over_once_and_released_only_as_it_was_read(
    wire: RedisWire,
) -> None:
    admission = Admission(wire)
    sender = _sender()
    claim = await admission.admit(
        sender, "d:1:2", "c", new_id=7, owner=OTHER, rate_per_second=10, burst=10
    )
    seen = await admission.admit(
        sender, "d:1:2", "c", new_id=8, owner=ME, rate_per_second=10, burst=10
    )
    taken = await admission.take_over(seen, ME)
    assert taken is not None
    assert taken.owner == ME
    assert await admission.take_over(seen, ME) is None  # the value changed meanwhile
    await admission.release(claim)  # stale: the claim is someone else's now
    still = await admission.admit(
        sender, "d:1:2", "c", new_id=9, owner=ME, rate_per_second=10, burst=10
    )
    assert (still.new, still.message_id, still.owner) == (False, 7, ME)
    await admission.release(taken)
    fresh = await admission.admit(
        sender, "d:1:2", "c", new_id=10, owner=ME, rate_per_second=10, burst=10
    )
    assert (fresh.new, fresh.message_id) == (True, 10)


async def test_the_wire_reconnects_after_its_connection_is_killed(
    wire: RedisWire, endpoints: Endpoints
) -> None:
    first = await wire.call(b"CLIENT", b"ID")
    admin = aioredis.Redis.from_url(endpoints.redis_url)
    try:
        killed = await admin.execute_command("CLIENT", "KILL", "ID", first)  # type: ignore[no-untyped-call]
        assert killed == 1
    finally:
        await admin.aclose()
    await asyncio.sleep(0.1)
    assert await wire.call(b"PING") == b"PONG"
    assert await wire.call(b"CLIENT", b"ID") != first  # on a new connection


async def test_the_wire_gives_up_on_a_stalled_server_and_recovers() -> None:
    proxy = CuttableProxy("127.0.0.1", 6379)
    await proxy.start()
    wire = RedisWire(RedisAccess(f"redis://127.0.0.1:{proxy.port}/0"), timeout=0.5)
    try:
        assert await wire.call(b"PING") == b"PONG"
        proxy.stall()
        with pytest.raises(RedisUnavailable, match="no reply"):
            await asyncio.wait_for(wire.call(b"PING"), 5)
        proxy.resume()
        assert await wire.call(b"PING") == b"PONG"
    finally:
        wire.close()
        await proxy.close()


async def test_settling_produces_only_the_copies_that_never_landed(
    endpoints: Endpoints, unique: str, wire: RedisWire
) -> None:
    topic, producer, admission, settler = await _settling(endpoints, unique, wire, 4)
    message_id = _settleable_id(77)
    recipients = [11, 12, 13, 14, 15]

    def records(missing: frozenset[int] | None) -> list[Record]:
        wanted = recipients if missing is None else sorted(missing)
        entry = deliveries.Delivery(
            chat_id="g:1", kind="group", sender_id=11, body="late", client_message_id="c"
        )
        copies = deliveries.encode(entry, message_id, wanted)
        return [Record(topic, c.key, c.value, c.recipient % 4) for c in copies]

    try:
        # The first attempt reached two of the five recipients, then its process died.
        await producer.send([r for r in records(None) if r.key in (b"11", b"14")])
        sender = _sender()
        claim = await admission.admit(
            sender, "g:1", "c", new_id=message_id, owner=OTHER, rate_per_second=10, burst=10
        )
        settled = await settler.settle(claim, ME, records, _placed(4))
        assert settled.owner == ME
        # A second settle (another retry) finds every copy and produces nothing.
        again = await admission.admit(
            sender, "g:1", "c", new_id=1, owner=ME, rate_per_second=10, burst=10
        )
        await settler.settle(again, ME, records, _placed(4))
    finally:
        producer.close()
        settler.close()
    found = await asyncio.to_thread(_read_all, endpoints.kafka, topic, 4)
    assert Counter(found) == Counter(recipients)


async def test_settling_a_group_entry_produces_records_only_for_members_none_reached(
    endpoints: Endpoints, unique: str, wire: RedisWire
) -> None:
    topic, producer, admission, settler = await _settling(endpoints, unique, wire, 4)
    message_id = _settleable_id(78)
    members = [11, 12, 13, 14, 15]  # on partitions 3, 0, 1, 2, 3 (id % 4 here)

    def records(missing: frozenset[int] | None) -> list[Record]:
        by_partition: dict[int, list[int]] = {}
        for member in members if missing is None else sorted(missing):
            by_partition.setdefault(member % 4, []).append(member)
        entry = deliveries.Delivery(
            chat_id="g:2", kind="group", sender_id=11, body="late", client_message_id="c"
        )
        return [
            Record(topic, key, value, partition)
            for partition, key, value in deliveries.encode_group(entry, message_id, by_partition)
        ]

    try:
        # The first attempt's record for partition 3 (members 11 and 15) landed, then its
        # process died.
        await producer.send([r for r in records(None) if r.partition == 3])
        sender = _sender()
        claim = await admission.admit(
            sender, "g:2", "c", new_id=message_id, owner=OTHER, rate_per_second=10, burst=10
        )
        await settler.settle(claim, ME, records, _placed(4))
        again = await admission.admit(
            sender, "g:2", "c", new_id=1, owner=ME, rate_per_second=10, burst=10
        )
        await settler.settle(again, ME, records, _placed(4))
    finally:
        producer.close()
        settler.close()
    found = await asyncio.to_thread(_read_all, endpoints.kafka, topic, 4)
    assert Counter(found) == Counter(members)


async def test_a_message_too_young_to_settle_is_refused_for_now(
    endpoints: Endpoints, unique: str, wire: RedisWire
) -> None:
    admission = Admission(wire)
    producer = AsyncProducer(endpoints.kafka.config())
    settler = Settler(producer, admission, endpoints.kafka, f"{unique}.none")
    try:
        message_id = (_now_ms() - EPOCH_MS) << TIME_SHIFT
        claim = await admission.admit(
            _sender(), "d:1:2", "c", new_id=message_id, owner=OTHER, rate_per_second=10, burst=10
        )
        with pytest.raises(Unavailable, match="may still reach Kafka"):
            await settler.settle(claim, ME, lambda _: [], _placed(4))
    finally:
        producer.close()
        settler.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _settling(
    endpoints: Endpoints, unique: str, wire: RedisWire, partitions: int
) -> tuple[str, AsyncProducer, Admission, Settler]:
    """A deliveries topic of ``partitions``, and what settles sends on it."""
    topic = f"{unique}.deliveries"
    await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, partitions, 1, {})
    producer = AsyncProducer(endpoints.kafka.config())
    admission = Admission(wire)
    return topic, producer, admission, Settler(producer, admission, endpoints.kafka, topic)


def _settleable_id(sequence: int) -> int:
    """A message claimed long enough ago that its earlier attempt is certainly over."""
    claimed_ms = _now_ms() - int(SETTLE_SECONDS + 5) * 1000
    return ((claimed_ms - EPOCH_MS) << TIME_SHIFT) | sequence


def _placed(partitions: int, *eras: Era) -> Partitioning:
    return Partitioning(
        partitions, (Server("m1", "grpc://127.0.0.1:1", ((0, partitions - 1),)),), eras
    )


async def test_settling_after_partitions_were_added_finds_the_copies_of_the_old_count(
    endpoints: Endpoints, unique: str, wire: RedisWire
) -> None:
    """The first attempt wrote some copies under 4 partitions; partitions went to 8 before
    the retry. The copies that landed are found where the old count put them, and only the
    missing ones are produced, under the new count."""
    topic, producer, admission, settler = await _settling(endpoints, unique, wire, 8)
    message_id = _settleable_id(78)
    # Recipients whose partition differs between 4 and 8 partitions, so the test can fail.
    recipients = [u for u in range(1000, 1100) if partition_for(u, 4) != partition_for(u, 8)][:5]
    entry = deliveries.Delivery(
        chat_id="g:2", kind="group", sender_id=recipients[0], body="b", client_message_id="c"
    )

    def records_under(count: int, missing: frozenset[int] | None) -> list[Record]:
        wanted = recipients if missing is None else sorted(missing)
        copies = deliveries.encode(entry, message_id, wanted)
        return [Record(topic, c.key, c.value, partition_for(c.recipient, count)) for c in copies]

    try:
        landed = {recipients[1], recipients[3]}
        await producer.send([r for r in records_under(4, None) if int(r.key or 0) in landed])
        grown = _placed(8, Era(4, (10**6,) * 4))
        claim = await admission.admit(
            _sender(), "g:2", "c", new_id=message_id, owner=OTHER, rate_per_second=10, burst=10
        )
        await settler.settle(claim, ME, lambda m: records_under(8, m), grown)
    finally:
        producer.close()
        settler.close()
    found = await asyncio.to_thread(_read_all, endpoints.kafka, topic, 8)
    assert Counter(found) == Counter(recipients)


def _read_all(kafka: KafkaAccess, topic: str, partitions: int) -> list[int]:
    consumer = Consumer(kafka.config(**{"group.id": topic, "enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: list[int] = []
    ended = 0
    try:
        while ended < partitions:
            for record in fetch(consumer, 100, 5.0):
                if record.error() is not None:
                    ended += 1
                    continue
                found += deliveries.recipients(deliveries.decode(record.value()))
    finally:
        consumer.close()
    return found
