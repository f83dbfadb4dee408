"""The Redis client every service uses."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool waits for a free connection under load and reconnects on its own.

    redis-py's default pool raises MaxConnectionsError once it is exhausted, which turned a
    burst of sends into failures; waiting (up to 10 s) turns it into back-pressure instead.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        # After a Redis restart every pooled connection is dead; without retries each one
        # fails a request once before it is replaced. One quick retry reconnects instead.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        socket_connect_timeout=2,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
