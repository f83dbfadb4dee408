"""``python -m history rebuild --keyspace NAME``: a keyspace made again from the log alone.

The users topic (compacted: one record per user) and the deliveries topic (kept for ever)
hold everything the tables say: users, direct chats (their ``OPENED`` records and messages),
groups (their change records carry the whole change), messages and every user's chat state.
The rebuild creates ``NAME`` with the migrations, then replays both topics from their start
to where they ended when it began, writing each table with the code of the component that
owns it (``HistoryStore``, ``messaging/group_store.py``, ``messaging/chats.py``). Every write
is idempotent and stamped with the time of the record it comes from, so the result does not
depend on the order partitions are read in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cassandra.query import BoundStatement
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from chatlib import cassandra, deliveries, user_records
from chatlib.ids import unsigned
from chatlib.kafka import fetch, reader
from chatlib.settings import Common
from history import migrate
from history.store import HistoryStore
from messaging.chats import replay_direct
from messaging.group_store import GroupStore
from protos.chat.v1 import common_pb2, envelope_pb2

logger = logging.getLogger(__name__)
#: Records per write round: what the driver's connection takes in flight at once.
BATCH = 1000


def backfill_users(common: Common) -> int:
    """Put every user of the live keyspace on the users topic: for a deployment whose users
    registered before registration announced them (the topic is compacted, so users already
    on it are only written again, unchanged). Returns how many were written."""
    cluster, session = cassandra.connect(common.cassandra_hosts, common.cassandra_port)
    producer = Producer(
        {"bootstrap.servers": common.kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    failures: list[str] = []

    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failures.append(str(error))

    written = 0
    try:
        query = session.prepare(
            cassandra.qualified(
                "SELECT user_id, username, password_hash, created_at FROM users", common.keyspace
            )
        )
        rows = session.execute(query)
        for row in rows:  # the driver pages through the table
            record = user_records.user(
                unsigned(row.user_id),
                row.username or "",
                row.password_hash or "",
                int(row.created_at.timestamp() * 1000) if row.created_at else 0,
            )
            key, value = user_records.encode(record)
            producer.produce(common.users_topic, value, key, on_delivery=delivered)
            producer.poll(0)
            written += 1
        if producer.flush(60) or failures:
            raise SystemExit(f"Kafka did not take every user: {failures[:3]}")
    finally:
        cluster.shutdown()
    return written


def run(common: Common, keyspace: str, replication: str) -> dict[str, Any]:
    """Rebuild ``keyspace`` (which must not hold data yet); what was replayed."""
    if keyspace == common.keyspace:
        raise SystemExit(f"refusing to rebuild into the live keyspace {keyspace!r}")
    cluster, session = cassandra.connect(common.cassandra_hosts, common.cassandra_port)
    try:
        migrate.apply(session, keyspace, replication)
        db = cassandra.AsyncSession(session, keyspace)
        return asyncio.run(_replay(common, db))
    finally:
        cluster.shutdown()


async def _replay(common: Common, db: cassandra.AsyncSession) -> dict[str, Any]:
    started = time.monotonic()
    store = HistoryStore(db)
    groups = GroupStore(db)
    users = 0

    async def user_batch(records: list[Any]) -> None:
        nonlocal users
        for record in records:
            found = user_records.decode(record.value())
            if found is not None:  # a compacted-away key leaves a tombstone: nobody
                await store.insert_user(found, with_name=True)
                users += 1

    await _read_all(common.kafka_bootstrap, common.users_topic, user_batch)
    counts = {"deliveries": 0, "undecodable": 0, "changes": 0}

    async def delivery_batch(records: list[Any]) -> None:
        batch: list[envelope_pb2.Delivery] = []
        statements: list[tuple[BoundStatement, int]] = []
        for record in records:
            try:
                delivery = deliveries.decode(record.value())
            except deliveries.InvalidDelivery:
                counts["undecodable"] += 1  # the live writer dead-lettered it too
                continue
            batch.append(delivery)
            if delivery.kind == "direct":
                if delivery.primary or delivery.change.action == common_pb2.ChatChange.OPENED:
                    statements.append(replay_direct(db, delivery.chat_id))
            elif delivery.primary and delivery.HasField("change"):
                statements += groups.replay(delivery)
                counts["changes"] += 1
        await store.persist(batch)
        if statements:
            await db.write(statements)
        counts["deliveries"] += len(batch)

    await _read_all(common.kafka_bootstrap, common.deliveries_topic, delivery_batch)
    return {"users": users, **counts, "seconds": round(time.monotonic() - started, 1)}


async def _read_all(bootstrap: str, topic: str, handle: Callable[[list[Any]], Any]) -> None:
    """Every record of ``topic`` from its start to its end as of now, in batches."""
    consumer: Consumer = reader(bootstrap, "rebuild")
    try:
        metadata = await asyncio.to_thread(consumer.list_topics, topic, 10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in partitions:
            low, high = await asyncio.to_thread(
                consumer.get_watermark_offsets, TopicPartition(topic, partition), 10.0, False
            )
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not starts:
            return
        consumer.assign(starts)
        while ends:
            messages = await asyncio.to_thread(fetch, consumer, BATCH, 1.0)
            records = []
            for message in messages:
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {error}")
                    ends.pop(partition, None)  # read to its end (compaction leaves gaps)
                    continue
                end = ends.get(partition)
                if end is None or (message.offset() or 0) >= end:
                    continue
                records.append(message)
                if (message.offset() or 0) + 1 >= end:
                    del ends[partition]
            if records:
                await handle(records)
    finally:
        consumer.close()
