"""Partition leases against the real Redis: placement, failover, fencing, graceful leave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from chatlib.live_config import Document, LiveSection
from chatlib.ownership import LeaseKeys, OwnerView, Routing
from chatlib.partitioning import Partitioning
from messaging.streams.leases import PartitionLeases
from tests.integration.conftest import Endpoints

PARTITIONS = 6
#: Short, so the tests that wait for leases to run out are quick; long beside a turn (ms).
TTL_MS = 2_000


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(endpoints.redis_url)
    yield client
    await client.aclose()


def _placement() -> LiveSection[Partitioning]:
    section: LiveSection[Partitioning] = LiveSection("partitioning", Partitioning.parse)
    value = {
        "partitions": PARTITIONS,
        "servers": [
            {"name": "a", "address": "grpc://127.0.0.1:1", "ranges": [[0, 2]]},
            {"name": "b", "address": "grpc://127.0.0.1:2", "ranges": [[3, 5]]},
        ],
    }
    section.offer(Document("partitioning", 1, value, "test", "now"))
    return section


class Server:
    """One messaging server's leases, with a fan-out that only records what it was told."""

    def __init__(self, redis: aioredis.Redis, name: str, keys: LeaseKeys) -> None:
        self.applied: list[frozenset[int]] = []
        self.view = OwnerView(redis, keys)

        async def settled() -> None:
            """Applied at once."""

        self.leases = PartitionLeases(
            redis,
            name,
            f"127.0.0.1:{ord(name)}",
            _placement(),
            self.view,
            self.applied.append,
            settled,
            ttl_ms=TTL_MS,
            keys=keys,
        )

    async def turn(self) -> None:
        """One beat, and the hand-over of what it gave back (in the server: in the background)."""
        await self.leases.turn()
        await self.leases.handed_over()

    @property
    def feeds(self) -> frozenset[int]:
        return self.applied[-1] if self.applied else frozenset()


@pytest.fixture
def keys(unique: str) -> LeaseKeys:
    return LeaseKeys(unique)


async def settle(*servers: Server) -> None:
    """Turns enough for every move to finish (a give-back is taken at the next turn)."""
    for _ in range(2):
        for server in servers:
            await server.turn()


async def test_each_server_takes_the_partitions_placed_on_it(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await settle(b, a)
    assert a.feeds == {0, 1, 2}
    assert b.feeds == {3, 4, 5}
    routing = Routing(_placement(), a.view)
    assert routing.owner(4).name == "b"
    assert routing.owner(4).target == f"127.0.0.1:{ord('b')}"


async def test_a_dead_servers_partitions_move_to_the_survivor_with_a_new_epoch(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await settle(a, b)
    epochs = {p: b.leases.epoch(p) for p in (3, 4, 5)}
    # b stops beating (killed). Until its leases run out a cannot take them.
    await a.turn()
    assert a.feeds == {0, 1, 2}
    await asyncio.sleep(TTL_MS / 1000 + 0.1)
    await a.turn()
    assert a.feeds == set(range(PARTITIONS))
    for p, epoch in epochs.items():
        assert epoch is not None
        assert (a.leases.epoch(p) or 0) > epoch


async def test_a_frozen_server_feeds_nothing_once_its_leases_ran_out_and_gets_its_own_back(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await settle(a, b)
    assert b.leases.holds(3)
    await asyncio.sleep(TTL_MS / 1000 + 0.1)  # b is frozen (SIGSTOP): it does not beat
    assert not b.leases.holds(3)  # checked before each batch: nothing fetched is delivered
    await a.turn()
    assert a.feeds == set(range(PARTITIONS))
    # b wakes: its renewals fail, it is alive again, so a gives its partitions back.
    await b.turn()
    assert b.feeds == set()
    await a.turn()
    assert a.feeds == {0, 1, 2}
    await b.turn()
    assert b.feeds == {3, 4, 5}
    # Never two at once: after each step the fan-outs' sets were disjoint at their latest.
    assert not a.feeds & b.feeds


async def test_a_server_that_leaves_hands_its_partitions_over_at_once(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await settle(a, b)
    started = time.monotonic()
    await b.leases.leave()
    assert b.feeds == set()
    await a.turn()
    assert a.feeds == set(range(PARTITIONS))
    assert time.monotonic() - started < TTL_MS / 1000  # did not wait for the leases to lapse


async def test_a_restarted_server_takes_over_the_leases_of_its_previous_process(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await settle(a, b)
    old = b.leases.epoch(3)
    restarted = Server(redis_client, "b", keys)  # b was SIGKILLed and started again
    await restarted.turn()
    assert restarted.feeds == {3, 4, 5}
    assert (restarted.leases.epoch(3) or 0) > (old or 0)
    await b.turn()  # the old process, were it still around, finds them gone
    assert b.feeds == set()


async def test_a_fan_out_slow_to_let_go_holds_up_neither_the_beat_nor_the_fencing(
    redis_client: aioredis.Redis, keys: LeaseKeys
) -> None:
    a, b = Server(redis_client, "a", keys), Server(redis_client, "b", keys)
    await a.turn()  # alone: a takes every partition, b's too
    assert a.feeds == set(range(PARTITIONS))
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()  # a fan-out that cannot commit (Kafka frozen)

    a.leases._settled = stuck
    await b.turn()  # b is alive: a must give 3-5 back
    await asyncio.wait_for(a.leases.turn(), TTL_MS / 1000)  # the beat does not wait for it
    assert a.feeds == {0, 1, 2}
    assert not a.leases.holds(3)  # nothing of 3-5 is delivered here from now on
    # The leases are not deleted before the fan-out let go: b cannot take them yet.
    await b.turn()
    assert b.feeds == set()
    never.set()  # the fan-out has committed and redirected: the leases go, and b takes them
    await a.leases.handed_over()
    await b.turn()
    assert b.feeds == {3, 4, 5}
