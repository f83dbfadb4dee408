"""What ``chat-admin grow`` waits for in Redis before it reads the old partitions' ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from chatlib.ownership import LeaseKeys
from config_service import grow
from config_service.grow import GrowthFailed
from tests.integration.conftest import Endpoints


@pytest.fixture
async def redis_client(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(endpoints.redis_url)
    yield client
    await client.aclose()


async def _alive(client: aioredis.Redis, keys: LeaseKeys, *names: str) -> None:
    seconds, micros = await client.time()
    until = int(seconds) * 1000 + int(micros) // 1000 + 60_000
    await client.zadd(keys.members, dict.fromkeys(names, until))


async def test_it_waits_for_every_live_server_to_hold_its_sends(
    redis_client: aioredis.Redis, unique: str
) -> None:
    keys = LeaseKeys(unique)
    await _alive(redis_client, keys, "m1", "m2")
    await redis_client.set(keys.held("m1"), "7")
    await redis_client.set(keys.held("m2"), "6")  # an earlier growth's word: not this one
    waiting = asyncio.create_task(grow._every_server_holds(redis_client, keys, 7))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await redis_client.set(keys.held("m2"), "7")
    await asyncio.wait_for(waiting, 5)


async def test_a_server_that_stops_beating_before_it_holds_fails_the_growth(
    redis_client: aioredis.Redis, unique: str
) -> None:
    keys = LeaseKeys(unique)
    await _alive(redis_client, keys, "m1", "m2")
    await redis_client.set(keys.held("m1"), "3")
    waiting = asyncio.create_task(grow._every_server_holds(redis_client, keys, 3))
    await asyncio.sleep(0.2)
    # m2 may be frozen with records queued in its producer: not a server that left.
    await redis_client.zrem(keys.members, "m2")
    with pytest.raises(GrowthFailed, match="m2 stopped beating before they held"):
        await asyncio.wait_for(waiting, 5)


async def test_a_server_that_never_holds_fails_the_growth_in_time(
    redis_client: aioredis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = LeaseKeys(unique)
    monkeypatch.setattr(grow, "HELD_SECONDS", 0.5)
    await _alive(redis_client, keys, "m1", "m2")
    await redis_client.set(keys.held("m2"), "3")
    with pytest.raises(GrowthFailed, match=r"m1 did not hold their sends within 0\.5 s"):
        await grow._every_server_holds(redis_client, keys, 3)
