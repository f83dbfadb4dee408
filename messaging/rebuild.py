"""``python -m messaging rebuild --keyspace NAME``: messaging's tables made again from the log.

Direct chats (their ``OPENED`` records, and the primary copy of every message) and groups
(each change's record carries the whole change: subjects, every role given, the version, the
name) are in the deliveries topic. The rebuild creates messaging's tables in ``NAME`` with its
migrations, then replays the topic from its start to where it ended when it began, writing
each table with the code that owns it (``messaging/chats.py``, ``messaging/groups/store.py``).
Every write is stamped with its record's time, so partitions may be read in any order. History
rebuilds its own tables into the same keyspace (``python -m history rebuild``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cassandra.query import BoundStatement
from confluent_kafka import Message

import messaging
from chatlib import cassandra, deliveries, migrations
from chatlib.kafka import read_all
from chatlib.settings import Common
from messaging.chats import replay_direct
from messaging.groups.store import GroupStore
from protos.chat.v1 import common_pb2

OPENED = common_pb2.ChatChange.OPENED


def run(common: Common, keyspace: str) -> dict[str, Any]:
    """Rebuild messaging's tables in ``keyspace``; what was replayed."""
    if keyspace == common.keyspace:
        raise SystemExit(f"refusing to rebuild into the live keyspace {keyspace!r}")
    cluster, session = cassandra.connect(common.cassandra)
    try:
        migrations.apply(
            session, keyspace, common.keyspace_replication, "messaging", messaging.MIGRATIONS
        )
        return asyncio.run(_replay(common, cassandra.AsyncSession(session, keyspace)))
    finally:
        cluster.shutdown()


async def _replay(common: Common, db: cassandra.AsyncSession) -> dict[str, Any]:
    started = time.monotonic()
    groups = GroupStore(db)
    counts = {"direct_chats": 0, "changes": 0}

    async def batch(records: list[Message]) -> None:
        statements: list[tuple[BoundStatement, int]] = []
        for record in records:
            try:
                delivery = deliveries.decode(record.value())
            except deliveries.InvalidDelivery:
                continue  # the live writer dead-lettered it
            if delivery.kind == "direct":
                if delivery.primary or delivery.change.action == OPENED:
                    statements.append(replay_direct(db, delivery.chat_id))
                    counts["direct_chats"] += 1
            elif delivery.primary and delivery.HasField("change"):
                statements += groups.replay(delivery)
                counts["changes"] += 1
        if statements:
            await db.write(statements)

    await read_all(common.kafka, common.deliveries_topic, batch)
    return {**counts, "seconds": round(time.monotonic() - started, 1)}
