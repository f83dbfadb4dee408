"""The Redis client every service uses."""

from __future__ import annotations

import redis.asyncio as aioredis


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool waits for a free connection under load.

    redis-py's default pool raises MaxConnectionsError once it is exhausted, which turned a
    burst of sends into failures; waiting (up to 10 s) turns it into back-pressure instead.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
