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
from chatlib.partitioning import Partitioning
from infra import apps, cluster
from infra.catalog import PARTITIONS
from tests.cluster.conftest import DELIVERIES, Load, Nodes, under_fault
from tests.e2e.conftest import Clients

GROWN = 2 * PARTITIONS


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


@pytest.mark.changes_the_stack
@pytest.mark.timeout(900)
async def test_partitions_added_under_load_lose_and_reorder_nothing(
    clients: Clients, nodes: Nodes
) -> None:
    before = await asyncio.to_thread(_placement, nodes)
    assert before.partitions == PARTITIONS
    assert not before.eras
    load = Load(clients)
    told: list[str] = []

    async def inject() -> None:
        grown = await asyncio.to_thread(_admin, nodes, "grow", "--to", str(GROWN))
        told.append(grown.stdout + grown.stderr)
        assert grown.returncode == 0, grown.stdout + grown.stderr

    async def heal() -> None:
        """Nothing is broken: the growth is over when the command returns."""

    await under_fault(
        f"partitions added under load ({PARTITIONS} -> {GROWN})",
        load,
        1.0,
        inject,
        heal,
        tier="service",
    )
    moved = [
        u
        for u in load.users
        if partition_for(u.user_id, PARTITIONS) != partition_for(u.user_id, GROWN)
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
    assert after.partitions == GROWN, told
    assert not after.hold_sends, told
    assert [e.partitions for e in after.eras] == [PARTITIONS]
    admin = AdminClient(nodes._kafka_config())
    topics = (await asyncio.to_thread(admin.list_topics, DELIVERIES, 10)).topics
    assert len(topics[DELIVERIES].partitions) == GROWN
    # Growing again to no more partitions is refused, naming why; nothing changes.
    again = await asyncio.to_thread(_admin, nodes, "grow", "--to", str(GROWN))
    assert again.returncode == 1
    assert f"more than the current {GROWN}" in again.stderr
    assert await asyncio.to_thread(_placement, nodes) == after
