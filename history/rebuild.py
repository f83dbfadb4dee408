"""``python -m history rebuild --keyspace NAME``: history's tables made again from the log.

The users topic (compacted: one record per user) and the deliveries topic (kept for ever) hold
everything history's tables say: users, messages, every user's chat state and read marks. The
rebuild creates history's tables in ``NAME`` with its migrations, then replays both topics from
their start to where they ended when it began through the writer's own code
(``HistoryStore.persist``). Every write is idempotent and stamped with the time of the record
it comes from, so the result does not depend on the order partitions are read in. Messaging
rebuilds its own tables into the same keyspace (``python -m messaging rebuild``); a whole
keyspace is the two.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from confluent_kafka import Message, Producer

import history
from chatlib import cassandra, deliveries, migrations, user_records
from chatlib.ids import unsigned
from chatlib.kafka import read_all
from chatlib.settings import Common
from history.store import HistoryStore


def backfill_users(common: Common) -> int:
    """Put every user of the live keyspace on the users topic: for a deployment whose users
    registered before registration announced them (the topic is compacted, so users already
    on it are only written again, unchanged). Returns how many were written."""
    cluster, session = cassandra.connect(common.cassandra)
    producer = Producer(common.kafka.config(**{"acks": "all", "enable.idempotence": True}))
    failures: list[str] = []

    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failures.append(str(error))

    written = 0
    try:
        query = session.prepare(
            cassandra.qualified(
                "SELECT user_id, username, password_hash, created_at, display_name, avatar_id"
                " FROM users",
                common.keyspace,
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
            record.display_name = row.display_name or ""  # the profile is the row's too
            record.avatar_id = unsigned(row.avatar_id or 0)
            key, value = user_records.encode(record)
            producer.produce(common.users_topic, value, key, on_delivery=delivered)
            producer.poll(0)
            written += 1
        if producer.flush(60) or failures:
            raise SystemExit(f"Kafka did not take every user: {failures[:3]}")
    finally:
        cluster.shutdown()
    return written


def run(common: Common, keyspace: str) -> dict[str, Any]:
    """Rebuild history's tables in ``keyspace`` (which must not hold their data yet); what was
    replayed."""
    if keyspace == common.keyspace:
        raise SystemExit(f"refusing to rebuild into the live keyspace {keyspace!r}")
    cluster, session = cassandra.connect(common.cassandra)
    try:
        migrations.apply(
            session, keyspace, common.keyspace_replication, "history", history.MIGRATIONS
        )
        db = cassandra.AsyncSession(session, keyspace)
        return asyncio.run(_replay(common, db))
    finally:
        cluster.shutdown()


async def _replay(common: Common, db: cassandra.AsyncSession) -> dict[str, Any]:
    started = time.monotonic()
    store = HistoryStore(db)
    users = 0

    async def user_batch(records: list[Message]) -> None:
        nonlocal users
        for record in records:
            found = user_records.decode(record.value())
            if found is not None:  # a compacted-away key leaves a tombstone: nobody
                await store.insert_user(found, with_name=True)
                users += 1

    await read_all(common.kafka, common.users_topic, user_batch)
    counts = {"deliveries": 0, "undecodable": 0}

    async def delivery_batch(records: list[Message]) -> None:
        batch: list[deliveries.Delivery] = []
        for record in records:
            try:
                batch.append(deliveries.decode(record.value()))
            except deliveries.InvalidDelivery:
                counts["undecodable"] += 1  # the live writer dead-lettered it too
        await store.persist(batch)
        counts["deliveries"] += len(batch)

    await read_all(common.kafka, common.deliveries_topic, delivery_batch)
    return {"users": users, **counts, "seconds": round(time.monotonic() - started, 1)}
