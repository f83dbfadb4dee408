"""The config store and the live-config subscriber against the real Redis, each test in its
own namespace (keys and channel), so the running cluster's config is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from chatlib import redis_client
from chatlib.config_checks import InvalidConfig
from chatlib.config_sections import DEFAULT_LIMITS, Limits
from chatlib.live_config import Document, LiveConfig, LiveSection, Namespace
from chatlib.settings import RedisAccess
from config_service.store import ConfigStore, VersionConflict
from tests.integration.conftest import Endpoints
from tests.tcp_proxy import CuttableProxy


@pytest.fixture
async def client(endpoints: Endpoints) -> AsyncIterator[aioredis.Redis]:
    found = redis_client.connect(endpoints.redis)
    yield found
    await found.aclose()


@pytest.fixture
def namespace(unique: str) -> Namespace:
    return Namespace(f"test:{unique}")


async def until(check: Callable[[], bool], seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - the state belongs to the subscriber's task
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def following(
    access: RedisAccess, namespace: Namespace
) -> AsyncIterator[tuple[LiveSection[Limits], LiveConfig]]:
    """A subscriber to the limits section, as a service runs one, until the block ends."""
    section = LiveSection("limits", Limits.parse)
    live = LiveConfig(access, [section], namespace)
    stop = asyncio.Event()
    await live.start(stop)
    try:
        yield section, live
    finally:
        stop.set()
        await live.close()


def limits(**changes: object) -> dict[str, object]:
    return DEFAULT_LIMITS.to_value() | changes


async def test_a_change_is_versioned_audited_and_announced(
    client: aioredis.Redis, namespace: Namespace
) -> None:
    store = ConfigStore(client, namespace)
    pubsub = client.pubsub()
    await pubsub.subscribe(namespace.channel)
    try:
        first = await store.seed("limits", limits(), by="seed")
        second = await store.replace("limits", limits(max_body_bytes=100), by="ops")
        assert (first.document.version, second.document.version) == (1, 2)
        assert second.changed
        announced: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(announced) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    announced.append(json.loads(message["data"]))
        assert [(a["version"], a["value"]["max_body_bytes"]) for a in announced] == [
            (1, 4096),
            (2, 100),
        ]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]

    [seeded, changed] = await store.history("limits")
    assert (seeded["by"], seeded["old"], seeded["new"]["max_body_bytes"]) == ("seed", None, 4096)
    assert (changed["version"], changed["by"]) == (2, "ops")
    assert (changed["old"]["max_body_bytes"], changed["new"]["max_body_bytes"]) == (4096, 100)
    assert changed["at"].endswith("+00:00")

    # The same value again is not a new version; a stale If-Match and bad values change nothing.
    assert not (await store.replace("limits", limits(max_body_bytes=100), by="ops")).changed
    with pytest.raises(VersionConflict, match="limits is at version 2, the change was based on"):
        await store.replace("limits", limits(max_body_bytes=200), by="ops", expected_version=1)
    with pytest.raises(InvalidConfig, match=r"limits\.send_burst must be between 1 and 100000"):
        await store.replace("limits", limits(send_burst=0), by="ops")
    current = await store.get("limits")
    assert current is not None
    assert (current.version, current.value["max_body_bytes"]) == (2, 100)
    assert len(await store.history("limits")) == 2
    assert not (await store.seed("limits", limits(), by="seed")).changed


async def test_the_subscriber_applies_newer_versions_and_keeps_the_last_good_one(
    client: aioredis.Redis, namespace: Namespace, endpoints: Endpoints
) -> None:
    store = ConfigStore(client, namespace)
    await store.seed("limits", limits(), by="seed")
    async with following(endpoints.redis, namespace) as (section, live):
        seen: list[int] = []
        section.on_change(lambda value: seen.append(value.max_body_bytes))
        await store.replace("limits", limits(max_body_bytes=300), by="ops")
        await until(lambda: section.version == 2)
        # A document no parser accepts (written around the config service) is skipped.
        bad = {"section": "limits", "version": 3, "value": {"max_body_bytes": 1}}
        await client.publish(namespace.channel, json.dumps(bad))
        await store.replace("limits", limits(max_body_bytes=500), by="ops")
        await until(lambda: section.version == 3)
        assert seen == [300, 500]
        assert section.get().max_body_bytes == 500
        assert live.problem() is None


async def test_a_change_made_while_cut_off_is_applied_on_reconnect(
    client: aioredis.Redis, namespace: Namespace, endpoints: Endpoints
) -> None:
    store = ConfigStore(client, namespace)
    await store.seed("limits", limits(), by="seed")
    redis_url = urlsplit(endpoints.redis_url)
    proxy = CuttableProxy(redis_url.hostname or "127.0.0.1", redis_url.port or 6379)
    await proxy.start()
    try:
        proxied = f"redis://127.0.0.1:{proxy.port}{redis_url.path}"
        async with following(RedisAccess(proxied, login=endpoints.redis.login), namespace) as (
            section,
            live,
        ):
            await until(lambda: live.problem() is None and live.subscribed)
            await proxy.cut()
            await until(lambda: live.problem() is not None)
            await store.replace("limits", limits(max_body_bytes=700), by="ops")
            await asyncio.sleep(1.0)  # long enough for an announcement to arrive, were it heard
            assert section.version == 1
            assert section.get().max_body_bytes == 4096  # still serving the last good config
            problem = live.problem()
            assert problem is not None
            assert "serving the last good config: limits v1" in problem

            await proxy.start()
            await until(lambda: section.version == 2)
            assert section.get().max_body_bytes == 700
            await until(lambda: live.problem() is None)
            assert live.resubscribed == 1
    finally:
        await proxy.close()


async def test_a_skipped_version_makes_the_subscriber_read_redis(
    client: aioredis.Redis, namespace: Namespace, endpoints: Endpoints
) -> None:
    store = ConfigStore(client, namespace)
    await store.seed("limits", limits(), by="seed")
    async with following(endpoints.redis, namespace) as (section, live):
        await until(lambda: live.subscribed)
        # Versions 2 and 3 reached Redis, but the announcement of 2 was lost and the one of 3
        # (deliberately) disagrees with what is stored: after a gap, Redis is the truth.
        stored = Document("limits", 3, limits(max_body_bytes=900), "ops", "t")
        await client.set(namespace.key("limits"), stored.to_json())
        heard = Document("limits", 3, limits(max_body_bytes=1), "ops", "t")
        await client.publish(namespace.channel, heard.to_json())
        await until(lambda: section.version == 3)
        assert section.get().max_body_bytes == 900
