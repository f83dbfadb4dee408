"""Our own processes killed or frozen under load: the survivors take over without anyone
doing anything, and nothing acknowledged is lost or duplicated on streams, in history or in
unread counts. Figures go to ``cluster-faults.json`` beside the storage faults'."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatlib.hashing import partition_for
from chatlib.partitioning import Partitioning
from infra import apps, modes
from infra.apps import default_partitioning
from infra.catalog import PARTITIONS
from tests.cluster.conftest import Load, Nodes, Revocation, under_fault
from tests.e2e.conftest import Clients, User

#: Long enough for the dead server's leases to run out (8 s) and its users to move, and for
#: a good stretch of load on the survivor alone.
MESSAGING_DOWN = 30.0
#: The issue's 20 s: longer than a lease, so the frozen server's partitions move meanwhile.
MESSAGING_FROZEN = 20.0


#: Where ./dev up --cluster places partitions (three servers, four each).
PLACEMENT = Partitioning.parse(json.loads(default_partitioning(modes.CLUSTER)))


def _on_m2(user: User) -> bool:
    """Whether the user's partition is placed on m2, the server the faults hit."""
    return PLACEMENT.owner(partition_for(user.user_id, PARTITIONS)).name == "m2"


@pytest.mark.timeout(900)
async def test_a_messaging_server_killed_and_not_restarted(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.app("messaging-m2")

    async def inject() -> None:
        await nodes.kill(victim)

    async def heal() -> None:
        # Only after the fault: its partitions were on the others meanwhile, and come back.
        await nodes.start_app(victim)

    await under_fault(
        "messaging: SIGKILL m2 (30 s, its users on m1 and m3 meanwhile)",
        Load(clients),
        MESSAGING_DOWN,
        inject,
        heal,
        Revocation(clients),
        affected=_on_m2,
        tier="service",
    )


@pytest.mark.timeout(900)
async def test_a_frozen_messaging_server_delivers_nothing_once_its_partitions_moved(
    clients: Clients, nodes: Nodes
) -> None:
    victim = nodes.app("messaging-m2")

    async def inject() -> None:
        nodes.pause(victim)

    async def heal() -> None:
        # It wakes holding records it fetched before the freeze, and leases that ran out:
        # a duplicate on any stream fails the accounting.
        nodes.resume(victim)

    await under_fault(
        "messaging: SIGSTOP m2 (20 s)",
        Load(clients),
        MESSAGING_FROZEN,
        inject,
        heal,
        Revocation(clients),
        affected=_on_m2,
        tier="service",
    )


@pytest.mark.timeout(900)
async def test_a_rolling_restart_of_every_service(clients: Clients, nodes: Nodes) -> None:
    async def inject() -> None:
        # What ./dev restart --rolling does: each service SIGTERMed, started, ready, in turn.
        await asyncio.to_thread(apps.start, nodes.ctx)

    async def heal() -> None:
        """Nothing is broken: every service is back when the restart returns."""

    await under_fault(
        "rolling restart of every service (./dev restart --rolling)",
        Load(clients),
        1.0,
        inject,
        heal,
        Revocation(clients),
        tier="service",
    )
