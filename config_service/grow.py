"""``chat-admin grow --to N``: add partitions to the deliveries topic of a running cluster.

A user's partition is ``stable_hash(user) % partitions``, so more partitions move most users
to another partition, and a user's records before the growth stay where they were written.
Nothing may be lost or reordered on the way, so the growth seals the old count at one offset
per partition:

1. The topic gets its new partitions. Nothing writes to them yet. Every Kafka client learns of
   them within ``METADATA_REFRESH_MS``; this waits twice that, and until every consumer group
   reading the topic (history writers, notifiers) has the new partitions assigned, so no
   record written to them later is read from anywhere but their start.
2. ``hold_sends``: every messaging server holds its sends before producing them, and says in
   Redis when nothing is in flight (``messaging/send/hold.py``). This waits for every live
   server to say so, and gives up (sends go on, nothing changed) if one does not in time or
   stops beating first.
3. The end of every old partition is read: the offset where the old count ends.
4. One config change: the new count, the new partitions placed on the servers, the old count
   and its ends appended to ``eras``, and sends released. From here a user's stream is the
   rest of their old partition up to its end, then their new partition
   (``Partitioning.trail``); servers move the streams of users whose partition changed.

Sends are held for a fraction of a second (steps 2-4; 77-349 ms measured here, growing with
the old count, see docs/benchmarks.md "Partitions"); nothing is refused unless that takes
longer than ``messaging/send/hold.py:HOLD_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from chatlib.config_checks import InvalidConfig
from chatlib.kafka import add_partitions, end_offsets
from chatlib.ownership import STACK_KEYS, LeaseKeys
from chatlib.partitioning import MAX_PARTITIONS, Partitioning
from chatlib.settings import METADATA_REFRESH_MS, Common
from config_service.store import ConfigStore

#: How long the consumer groups get to take the new partitions.
GROUPS_SECONDS = 120.0
#: How long every live messaging server gets to say it holds its sends.
HELD_SECONDS = 8.0


class GrowthFailed(Exception):
    """The growth stopped; the message says where, and what state it left."""


async def grow(
    common: Common,
    client: aioredis.Redis,
    store: ConfigStore,
    total: int,
    *,
    by: str,
    keys: LeaseKeys = STACK_KEYS,
    say: Any = print,
) -> Partitioning:
    """Grow the deliveries topic and the ``partitioning`` section to ``total`` partitions."""
    document = await store.get("partitioning")
    if document is None:
        raise GrowthFailed("the partitioning section is not set: is the stack set up?")
    current = Partitioning.parse(document.value)
    if not current.partitions < total <= MAX_PARTITIONS:
        raise InvalidConfig(
            f"--to must be more than the current {current.partitions} partitions and at most"
            f" {MAX_PARTITIONS}, got {total}"
        )
    topic = common.deliveries_topic
    started = time.monotonic()
    had = await asyncio.to_thread(add_partitions, common.kafka, topic, total)
    say(f"topic {topic}: {had} -> {total} partitions")
    await _groups_read(common, topic, total, say)
    await asyncio.sleep(max(0.0, 2 * METADATA_REFRESH_MS / 1000 - (time.monotonic() - started)))

    held = Partitioning(current.partitions, current.servers, current.eras, hold_sends=True)
    outcome = await store.replace(
        "partitioning", held.to_value(), by=by, expected_version=document.version
    )
    version = outcome.document.version
    holding = time.monotonic()
    say(f"sends held (partitioning version {version})")
    try:
        await _every_server_holds(client, keys, version)
        ends = await asyncio.to_thread(end_offsets, common.kafka, topic, current.partitions)
    except BaseException:
        await store.replace("partitioning", current.to_value(), by=by, expected_version=version)
        say("sends released; the partition count is unchanged")
        raise
    grown = Partitioning.parse(_grown(current, total, ends))
    await store.replace("partitioning", grown.to_value(), by=by, expected_version=version)
    held_ms = (time.monotonic() - holding) * 1000
    say(f"partitions {current.partitions} -> {total}; sends released after {held_ms:.0f} ms")
    return grown


def _grown(current: Partitioning, total: int, ends: list[int]) -> dict[str, Any]:
    """The section with ``total`` partitions: the new ones spread over the servers in
    contiguous runs, the old count recorded with its ends."""
    value = current.to_value()
    value.pop("hold_sends", None)
    value["partitions"] = total
    value["eras"] = [*value.get("eras", []), {"partitions": current.partitions, "ends": ends}]
    servers = value["servers"]
    share, rest = divmod(total - current.partitions, len(servers))
    first = current.partitions
    for index, server in enumerate(servers):
        count = share + (1 if index < rest else 0)
        if count:
            server["ranges"].append([first, first + count - 1])
            first += count
    return value


async def _groups_read(common: Common, topic: str, total: int, say: Any) -> None:
    """Wait until every consumer group subscribed to ``topic`` has all its partitions."""
    admin = AdminClient(common.kafka.config())
    deadline = time.monotonic() + GROUPS_SECONDS
    while True:
        short = await asyncio.to_thread(_groups_short, admin, topic, total)
        if not short:
            say(f"every consumer group of {topic} reads all {total} partitions")
            return
        if time.monotonic() > deadline:
            raise GrowthFailed(
                f"consumer groups {', '.join(sorted(short))} did not take the new partitions of"
                f" {topic} within {GROUPS_SECONDS:g} s; the topic has them, the partition count"
                " is unchanged: run grow again once they read them"
            )
        await asyncio.sleep(1.0)


def _groups_short(admin: AdminClient, topic: str, total: int) -> set[str]:
    """The groups with members reading ``topic`` whose assignments lack a partition, and
    those with members in the middle of a rebalance (whatever they read)."""
    listed = admin.list_consumer_groups().result(timeout=10)
    names = [g.group_id for g in listed.valid if not g.is_simple_consumer_group]
    short: set[str] = set()
    if not names:
        return short
    for name, future in admin.describe_consumer_groups(names).items():
        description = future.result(timeout=10)
        if description.members and description.state != ConsumerGroupState.STABLE:
            short.add(name)  # its assignment is being made: read it once it is
            continue
        assigned = {
            tp.partition
            for member in description.members
            for tp in member.assignment.topic_partitions
            if tp.topic == topic
        }
        if assigned and len(assigned) < total:
            short.add(name)
    return short


async def _every_server_holds(client: aioredis.Redis, keys: LeaseKeys, version: int) -> None:
    """Wait until every live messaging server says it holds its sends under ``version``.
    A server that stops beating before it said so may be frozen with records queued in its
    producer, which it would send when it wakes: that is a failure, not a departure."""
    deadline = time.monotonic() + HELD_SECONDS
    first: set[str] | None = None
    while True:
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        found = await client.zrangebyscore(keys.members, now_ms, "+inf")
        members = [m.decode() if isinstance(m, bytes) else str(m) for m in found]
        said = await client.mget([keys.held(m) for m in members]) if members else []
        waiting = [
            m
            for m, value in zip(members, said, strict=True)
            if value is None or int(value) < version
        ]
        if first is None:
            first = set(waiting)
        gone = first - set(members)
        if gone:
            raise GrowthFailed(
                f"messaging servers {', '.join(sorted(gone))} stopped beating before they held"
                " their sends"
            )
        first &= set(waiting)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise GrowthFailed(
                f"messaging servers {', '.join(waiting)} did not hold their sends within"
                f" {HELD_SECONDS:g} s"
            )
        await asyncio.sleep(0.05)
