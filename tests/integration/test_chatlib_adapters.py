"""chatlib's adapters against the real services: worker leases, the async producer, the
asyncio bridge to Cassandra."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from chatlib import cassandra
from chatlib.kafka import AsyncProducer, Record, ensure_topic
from chatlib.leases import KEY, WorkerLease
from tests.integration.conftest import Endpoints


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(endpoints.redis_url)
    yield client
    await client.aclose()


async def test_two_live_processes_never_share_a_worker_id(redis_client: aioredis.Redis) -> None:
    first, second = WorkerLease(redis_client, ttl_ms=3000), WorkerLease(redis_client, ttl_ms=3000)
    try:
        a = await first.acquire()
        b = await second.acquire()
        assert a != b
        assert first.check() == a
    finally:
        await first.release()
        await second.release()
    # Released ids are free again at once.
    third = WorkerLease(redis_client, ttl_ms=3000)
    try:
        assert await third.acquire() == min(a, b)
    finally:
        await third.release()


async def test_a_lease_taken_over_is_never_used_again(redis_client: aioredis.Redis) -> None:
    lease = WorkerLease(redis_client, ttl_ms=900)
    worker = await lease.acquire()
    try:
        # Someone else holds the id now (as after a Redis outage past the expiry): the next
        # renewal finds out, and the lease moves to a free id instead of sharing this one.
        await redis_client.set(KEY.format(worker), "someone-else", px=5000)
        async with asyncio.timeout(5):
            while lease.worker_id == worker:  # noqa: ASYNC110 - the renewal task changes it
                await asyncio.sleep(0.05)
        assert lease.check() == lease.worker_id != worker
        assert await redis_client.get(KEY.format(lease.worker_id)) is not None
    finally:
        await lease.release()
        assert await redis_client.get(KEY.format(worker)) == b"someone-else"  # not ours to free
        await redis_client.delete(KEY.format(worker))


async def test_produce_returns_after_the_ack_with_headers_kept(
    endpoints: Endpoints, unique: str
) -> None:
    topic = f"{unique}.adapter"
    assert await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, 2, 1, {})
    assert not await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, 2, 1, {})
    producer = AsyncProducer(endpoints.kafka.config())
    try:
        produced = await producer.send(
            [Record(topic, b"k", f"v{n}".encode(), 1, [("traceparent", b"00-x")]) for n in range(3)]
        )
    finally:
        producer.close()
    assert [p.partition for p in produced] == [1, 1, 1]
    assert sorted(p.offset for p in produced) == [0, 1, 2]
    consumer = Consumer({"bootstrap.servers": endpoints.kafka_bootstrap, "group.id": unique})
    try:
        consumer.assign([TopicPartition(topic, 1, 0)])
        records = await asyncio.to_thread(consumer.consume, 3, 10.0)
    finally:
        consumer.close()
    assert sorted(r.value() or b"" for r in records) == [b"v0", b"v1", b"v2"]
    assert all(r.headers() == [("traceparent", b"00-x")] for r in records)


async def test_async_session_runs_prepared_statements(endpoints: Endpoints, unique: str) -> None:
    cluster, session = cassandra.connect(endpoints.cassandra)
    try:
        session.execute(
            f"CREATE KEYSPACE {unique} WITH replication ="
            " {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(f"CREATE TABLE {unique}.kv (k text PRIMARY KEY, v int)")
        db = cassandra.AsyncSession(session)
        await asyncio.gather(
            *(
                db.execute(f"INSERT INTO {unique}.kv (k, v) VALUES (?, ?)", (f"k{n}", n))
                for n in range(20)
            )
        )
        rows = await db.execute(f"SELECT v FROM {unique}.kv WHERE k = ?", ("k7",))
        assert [row.v for row in rows] == [7]
        with pytest.raises(Exception, match=r"unconfigured table|does not exist"):
            await db.execute(f"SELECT v FROM {unique}.missing WHERE k = ?", ("k",))
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {unique}")
        cluster.shutdown()


async def test_an_existing_topic_is_given_the_configured_settings(
    endpoints: Endpoints, unique: str
) -> None:
    """How a deployment made before the deliveries were kept for ever gets them kept."""
    topic = f"{unique}.settings"
    created = {"retention.ms": "3600000"}
    assert await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, 1, 1, created)
    wanted = {"retention.ms": "-1"}
    assert not await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, 1, 1, wanted)

    def retention() -> str:
        admin = AdminClient(endpoints.kafka.config())
        resource = ConfigResource(ResourceType.TOPIC, topic)
        [described] = admin.describe_configs([resource]).values()
        return str(described.result(timeout=10)["retention.ms"].value)

    assert await asyncio.to_thread(retention) == "-1"
