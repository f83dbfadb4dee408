"""Partitions added to the running cluster under load (``./dev admin grow --to N``): users
move to new partitions, and every acknowledged message still reaches each stream once, in
the order of its chat, in history once and in unread counts once.

It leaves the cluster with more partitions, so it runs after every other cluster test."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from chatlib.hashing import partition_for
from chatlib.partitioning import MAX_PARTITIONS, Partitioning
from infra import apps, cluster
from tests.cluster.conftest import (
    DELIVERIES,
    Load,
    Nodes,
    TimedFollower,
    WebFollower,
    under_fault,
)
from tests.e2e.conftest import Clients


def _admin(nodes: Nodes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config_service", *args],
        env={**nodes.ctx.env, **apps.environment(nodes.ctx, cluster.ADMIN)},
        cwd=nodes.ctx.layout.project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _placement(nodes: Nodes) -> Partitioning:
    found = _admin(nodes, "get", "partitioning")
    assert found.returncode == 0, found.stderr
    return Partitioning.parse(json.loads(found.stdout)["value"])


#: Mobile clients' gRPC streams, then browsers' WebSockets through the BFF (whose own
#: upstream streams are the ones redirected): each run doubles the partitions again.
FOLLOWERS = {"grpc": TimedFollower, "web": WebFollower}


@pytest.mark.changes_the_stack
@pytest.mark.timeout(900)
@pytest.mark.parametrize("streams", list(FOLLOWERS))
async def test_partitions_added_under_load_lose_and_reorder_nothing(
    clients: Clients, nodes: Nodes, streams: str
) -> None:
    before = await asyncio.to_thread(_placement, nodes)
    # Twice what the stack has: 12 -> 24 on a fresh one (a second run on the same stack goes on
    # from there). A multiple keeps half the users where they were.
    grown_to = 2 * before.partitions
    if grown_to > MAX_PARTITIONS:
        pytest.skip(f"the stack has {before.partitions} partitions already; ./dev reset")
    load = Load(clients, follower=FOLLOWERS[streams])
    told: list[str] = []

    async def inject() -> None:
        grown = await asyncio.to_thread(_admin, nodes, "grow", "--to", str(grown_to))
        told.append(grown.stdout + grown.stderr)
        assert grown.returncode == 0, grown.stdout + grown.stderr

    async def heal() -> None:
        """Nothing is broken: the growth is over when the command returns."""

    await under_fault(
        f"partitions added under load ({before.partitions} -> {grown_to}, {streams} streams)",
        load,
        1.0,
        inject,
        heal,
        tier="service",
    )
    moved = [
        u
        for u in load.users
        if partition_for(u.user_id, before.partitions) != partition_for(u.user_id, grown_to)
    ]
    assert moved, "no user of the load changed partition: the test would show nothing"
    # Each stream got each chat's messages in the order they were acknowledged (a sender
    # sends one message at a time, so that is the order they were written in).
    for index, follower in enumerate(load.followers):
        for chat in load.chats:
            if index != chat.sender and index not in chat.readers:
                continue
            wanted = set(chat.acked)
            got = [m for m in follower.received if m in wanted]
            assert got == chat.acked, f"user {index} saw {chat.chat_id} out of order"
    after = await asyncio.to_thread(_placement, nodes)
    assert after.partitions == grown_to, told
    assert not after.hold_sends, told
    assert [e.partitions for e in after.eras] == [
        *(e.partitions for e in before.eras),
        before.partitions,
    ]
    admin = AdminClient(nodes._kafka_config())
    topics = (await asyncio.to_thread(admin.list_topics, DELIVERIES, 10)).topics
    assert len(topics[DELIVERIES].partitions) == grown_to
    # Growing again to no more partitions is refused, naming why; nothing changes.
    again = await asyncio.to_thread(_admin, nodes, "grow", "--to", str(grown_to))
    assert again.returncode == 1
    assert f"more than the current {grown_to}" in again.stderr
    assert await asyncio.to_thread(_placement, nodes) == after
