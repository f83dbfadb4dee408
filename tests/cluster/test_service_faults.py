"""Our own processes killed or frozen under load: the survivors take over without anyone
doing anything, and nothing acknowledged is lost or duplicated on streams, in history or in
unread counts. Figures go to ``cluster-faults.json`` beside the storage faults'."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from chatlib.hashing import partition_for
from chatlib.partitioning import Partitioning
from infra import apps, modes
from infra.apps import default_partitioning
from infra.catalog import PARTITIONS
from tests.cluster.conftest import APPS, Load, Nodes, Revocation, WebFollower, under_fault
from tests.e2e.conftest import (
    Admin,
    Clients,
    User,
    admin_token,
    applied_everywhere,
    http_client,
)

#: Long enough for the dead server's leases to run out (8 s), its users to move, and a stretch
#: of load on the survivors alone.
MESSAGING_DOWN = 20.0
#: The issue's 20 s: longer than a lease, so the frozen server's partitions move meanwhile.
MESSAGING_FROZEN = 20.0
HISTORY_DOWN = 15.0
BFF_DOWN = 10.0
WRITER_DOWN = 15.0
CONFIG_DOWN = 10.0


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
        "messaging: SIGKILL m2 (20 s, its users on m1 and m3 meanwhile)",
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


class HistoryReads:
    """A user reading their chat list (history's tables, through a history query process)
    every 100 ms while the fault lasts: what each read answered."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.statuses: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader = await self.clients.user("reader")
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: User) -> None:
        while True:
            try:
                status, _ = await reader.get("/v1/chats")
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            self.statuses.append(status)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.mark.timeout(900)
async def test_one_of_two_history_query_processes_killed(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.app("history-query")
    reads = HistoryReads(clients)

    async def inject() -> None:
        await reads.start()
        await asyncio.sleep(2)
        await nodes.kill(victim)

    async def heal() -> None:
        await reads.stop()
        await nodes.start_app(victim)

    await under_fault(
        "history: SIGKILL one of two query processes (15 s)",
        Load(clients),
        HISTORY_DOWN,
        inject,
        heal,
        Revocation(clients),
        tier="service",
    )
    # The survivor answered alone: once the channels had dropped the dead process, every
    # read succeeded until it came back (only calls in flight at the kill may fail).
    assert len(reads.statuses) > 50, reads.statuses
    assert set(reads.statuses[-30:]) == {200}, reads.statuses


@pytest.mark.timeout(900)
async def test_a_bff_killed_while_browsers_hold_websockets(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.app("bff")
    load = Load(clients, follower=WebFollower)

    async def inject() -> None:
        await nodes.kill(victim)

    async def heal() -> None:
        await nodes.start_app(victim)

    await under_fault(
        "bff: SIGKILL one of two (10 s, every user on a WebSocket through the balancer)",
        load,
        BFF_DOWN,
        inject,
        heal,
        Revocation(clients),
        tier="service",
    )
    # The kill reached browsers: the sockets it held ended and were opened again elsewhere.
    assert any(isinstance(f, WebFollower) and f.reconnects for f in load.followers)


@pytest.mark.timeout(900)
async def test_one_of_two_history_writers_killed(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.app("history-writer")

    async def inject() -> None:
        await nodes.kill(victim)

    async def heal() -> None:
        await nodes.start_app(victim)

    # The accounting reads every chat's history: what the dead writer had not written, the
    # other one wrote once its partitions came to it (the session timeout, 10 s).
    await under_fault(
        "history: SIGKILL one of two writers (15 s)",
        Load(clients),
        WRITER_DOWN,
        inject,
        heal,
        Revocation(clients),
        tier="service",
    )


@pytest.mark.timeout(900)
async def test_a_config_service_killed(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.app("config-service")
    changed: list[dict[str, Any]] = []

    async def inject() -> None:
        await nodes.kill(victim)
        # An operator changes the live config meanwhile, through the balancer, at once.
        async with http_client() as http:
            changed.append(await Admin(http, admin_token()).change("web", heartbeat_seconds=15))

    async def heal() -> None:
        await nodes.start_app(victim)

    await under_fault(
        "config: SIGKILL one of two config services (10 s)",
        Load(clients),
        CONFIG_DOWN,
        inject,
        heal,
        Revocation(clients),
        tier="service",
    )
    # The change made while one was dead is in force in both BFFs (the section's readers).
    bffs = tuple(app.ops_port for app in APPS if app.module == ["bff"])
    await applied_everywhere("web", int(changed[0]["version"]), bffs)
