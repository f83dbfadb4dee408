"""The Redis clients every service uses: one node by URL, or the primary of a replicated set
found through its sentinels (and found again after a failover: a connection to a demoted
primary is dropped on its first READONLY answer, and the next one asks the sentinels).

Writes whose loss would break a promise (idempotency claims, worker leases, revocations,
sessions, fences, config changes) are acknowledged only once a replica has them:
``durably`` sends ``WAIT 1`` after them on the same connection (the send path's RedisWire
does the same for its own writes). On a single node (no replicas)
there is nothing to wait for, and ``WAIT`` is not sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff

from chatlib.settings import RedisAccess

#: How long a durable write waits for a replica to acknowledge it.
WAIT_MS = 1000
#: Connections a sentinel-managed pool may open (it cannot wait for a free one as the
#: single-node pool does, so it may hold more).
SENTINEL_POOL_CONNECTIONS = 512


class NotReplicated(aioredis.ConnectionError):
    """No replica acknowledged a write within WAIT_MS: after a failover it could be gone."""


def connect(access: RedisAccess, max_connections: int = 64) -> aioredis.Redis:
    """A client of the primary whose pool reconnects on its own (to the new primary after a
    failover).

    For one node the pool waits for a free connection under load: redis-py's default pool
    raises MaxConnectionsError once it is exhausted, which turned a burst of sends into
    failures; waiting (up to 10 s) turns it into back-pressure instead.
    """
    # After a Redis restart (or a failover) every pooled connection is dead; without retries
    # each one fails a request once before it is replaced. One quick retry reconnects instead.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    if access.sentinels:
        return _sentinel(access, retry=retry, max_connections=SENTINEL_POOL_CONNECTIONS)
    pool = aioredis.BlockingConnectionPool.from_url(
        access.url,
        max_connections=max_connections,
        timeout=10,
        retry=retry,
        socket_connect_timeout=2,
        **_login(access),
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def follower(access: RedisAccess) -> aioredis.Redis:
    """A client for a subscription that sees every reconnect itself (no silent retries)."""
    settings: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "health_check_interval": 5,
    }
    if access.sentinels:
        return _sentinel(access, **settings)
    return aioredis.Redis.from_url(access.url, **settings, **_login(access))


def replicated(client: aioredis.Redis) -> bool:
    """Whether the client's primary has replicas that durable writes wait for."""
    return isinstance(client.connection_pool, SentinelConnectionPool)


async def durably(
    client: aioredis.Redis, queue: Callable[[Pipeline], Awaitable[object]]
) -> list[Any]:
    """Send what ``queue`` puts in a pipeline (commands, or scripts called with
    ``client=pipe``) on one connection, in one round trip, and with replicas return only once
    one of them holds its effects (NotReplicated otherwise). Not a transaction: each of these
    writes stands on its own, and WAIT covers all of them."""
    wait = replicated(client)
    async with client.pipeline(transaction=False) as pipe:
        await queue(pipe)
        if wait:
            pipe.execute_command("WAIT", 1, WAIT_MS)
        replies: list[Any] = await pipe.execute()
    if wait:
        if int(replies[-1]) < 1:
            raise NotReplicated("no Redis replica acknowledged the write")
        replies = replies[:-1]
    return replies


def _login(access: RedisAccess) -> dict[str, Any]:
    if access.login is None:
        return {}
    return {"username": access.login.user, "password": access.login.password}


def _sentinel(access: RedisAccess, **settings: Any) -> aioredis.Redis:
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(access.sentinels),
        sentinel_kwargs={"password": access.sentinel_password, "socket_timeout": 2},
        socket_connect_timeout=2,
        **_login(access),
    )
    client: aioredis.Redis = sentinel.master_for(
        access.master,
        connection_pool_class=SentinelConnectionPool,
        db=_db(access.url),
        **settings,
    )
    return client


def _db(url: str) -> int:
    path = url.rsplit("/", 1)[-1] if url.count("/") >= 3 else ""
    return int(path) if path.isdigit() else 0
