"""The floors of our own pipeline, measured against the same broker and node:
raw confluent-kafka produce-to-consume latency and raw cassandra-driver insert latency."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bench.pacing import at_rate
from bench.stats import summary
from chatlib import cassandra
from chatlib.kafka import AsyncProducer, ensure_topic, fetch
from chatlib.settings import CassandraAccess, KafkaAccess
from messaging.settings import FANOUT_FETCH_MIN_BYTES, FANOUT_FETCH_WAIT_MS, PRODUCER_LINGER_MS

PARTITIONS = 12


@dataclass(frozen=True)
class Batching:
    """How long Kafka's clients wait to batch: the producer's linger, and when a fetch is
    answered (this many bytes, or after this long)."""

    linger_ms: int
    fetch_wait_ms: int
    fetch_min_bytes: int


#: The send path's and the fan-out's own settings at full load (``messaging/settings.py``).
OURS = Batching(PRODUCER_LINGER_MS, FANOUT_FETCH_WAIT_MS, FANOUT_FETCH_MIN_BYTES)
#: Kafka as fast as its clients go: nothing waits to batch.
LATENCY = Batching(0, 1, 1)


async def kafka_floor(
    kafka: KafkaAccess,
    rate: float,
    duration: float,
    body_bytes: int,
    batching: Batching = OURS,
) -> dict[str, Any]:
    """Produce (idempotent, acks=all, as messaging does) at ``rate``; a consumer thread stamps
    each record's arrival. Latency = arrival - produce call, on one monotonic clock. With
    ``OURS``, produced and fetched as the send path and the fan-out do at full load, so the
    floor and the pipeline wait alike; with ``LATENCY``, as fast as Kafka goes."""
    topic = f"bench.floor.{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(ensure_topic, kafka, topic, PARTITIONS, 1, {})
    consumer = Consumer(
        kafka.config(
            **{
                "group.id": topic,
                "fetch.wait.max.ms": batching.fetch_wait_ms,
                "fetch.min.bytes": batching.fetch_min_bytes,
            }
        )
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    arrivals: list[tuple[int, float]] = []
    stop = threading.Event()
    total = int(rate * duration)

    def consume() -> None:
        while not stop.is_set() and len(arrivals) < total:
            for record in fetch(consumer, 500, 0.1):
                if record.error() is None:
                    (index,) = struct.unpack_from(">q", record.value() or b"")
                    arrivals.append((index, time.monotonic()))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    await asyncio.sleep(2)  # let the consumer fetch from every partition first
    producer = AsyncProducer(kafka.config(**{"linger.ms": batching.linger_ms}))
    sent: dict[int, float] = {}
    padding = b"x" * max(0, body_bytes - 8)

    async def produce(i: int) -> None:
        sent[i] = time.monotonic()
        await producer.produce(topic, struct.pack(">q", i) + padding, partition=i % PARTITIONS)

    await at_rate(total, rate, produce)
    # The reader stops by itself once every record arrived; give it 10 s more at most.
    await asyncio.to_thread(reader.join, 10)
    stop.set()
    reader.join()
    producer.close()
    consumer.close()
    latencies = [(at - sent[i]) * 1000 for i, at in arrivals if i in sent]
    return {
        "rate": rate,
        "duration_s": duration,
        "body_bytes": body_bytes,
        "batching": asdict(batching),
        "produced": total,
        "consumed": len(arrivals),
        "produce_to_consume_ms": summary(latencies),
    }


async def cassandra_floor(
    access: CassandraAccess, rate: float, duration: float, body_bytes: int
) -> dict[str, Any]:
    """Prepared inserts at ``rate`` into a table shaped like messages_by_chat."""
    keyspace = f"bench_{uuid.uuid4().hex[:8]}"
    cluster, session = cassandra.connect(access)
    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication ="
            " {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(
            f"CREATE TABLE {keyspace}.messages (chat_id text, bucket int, message_id bigint,"
            " body text, PRIMARY KEY ((chat_id, bucket), message_id))"
        )
        db = cassandra.AsyncSession(session, keyspace)
        insert = "INSERT INTO messages (chat_id, bucket, message_id, body) VALUES (?, ?, ?, ?)"
        db.prepare(insert)
        body = "x" * body_bytes
        total = int(rate * duration)
        latencies: list[float] = []

        async def one(i: int) -> None:
            began = time.monotonic()
            await db.execute(insert, (f"chat-{i % 100}", 1, i, body))
            latencies.append((time.monotonic() - began) * 1000)

        await at_rate(total, rate, one)
        return {
            "rate": rate,
            "duration_s": duration,
            "body_bytes": body_bytes,
            "inserts": total,
            "insert_ms": summary(latencies),
        }
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()
