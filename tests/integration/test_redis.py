"""Redis pub/sub delivers a published message to a subscriber."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.integration.conftest import Endpoints


async def test_pubsub_delivers_to_a_subscriber(endpoints: Endpoints, unique: str) -> None:
    channel = f"{unique}.config-changes"
    subscriber = aioredis.Redis.from_url(endpoints.redis_url)
    publisher = aioredis.Redis.from_url(endpoints.redis_url)
    pubsub = subscriber.pubsub()
    try:
        await pubsub.subscribe(channel)
        confirmation = await pubsub.get_message(timeout=5)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"

        receivers = await publisher.publish(channel, b'{"section":"limits","version":7}')
        assert receivers == 1

        message = None
        async with asyncio.timeout(10):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message["channel"] == channel.encode()
        assert message["data"] == b'{"section":"limits","version":7}'
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 8.1
        await subscriber.aclose()
        await publisher.aclose()


async def test_a_value_written_is_read_back(endpoints: Endpoints, unique: str) -> None:
    client = aioredis.Redis.from_url(endpoints.redis_url)
    try:
        assert await client.set(f"{unique}:lease", "worker-3", nx=True, ex=30)
        # SET NX is how worker ids will be leased: a second claim must fail.
        assert not await client.set(f"{unique}:lease", "worker-4", nx=True, ex=30)
        assert await client.get(f"{unique}:lease") == b"worker-3"
    finally:
        await client.delete(f"{unique}:lease")
        await client.aclose()
