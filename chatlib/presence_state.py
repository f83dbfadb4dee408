"""Where presence lives in Redis, for the servers that write it (``messaging/signals/presence.py``)
and everyone who reads it (GetPresence, the notifier).

``chat:presence:{user}`` is a hash of messaging server name -> live streams of the user on
that server, and ``seen`` -> when the last one ended (ms). Online means any server field.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

SEEN = "seen"
#: Users one presence question may name (GetPresence, GET /v1/presence).
MAX_ASKED = 200


def presence_key(user: int) -> str:
    return f"chat:presence:{user}"


async def read(redis: aioredis.Redis, users: Sequence[int]) -> list[tuple[bool, int]]:
    """(online, last seen ms) for each of ``users``, in one round trip."""
    if not users:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.hgetall(presence_key(user))
        found = await pipe.execute()
    answer = []
    for fields in found:
        online = any(name != SEEN.encode() for name in fields)
        answer.append((online, 0 if online else int(fields.get(SEEN.encode(), 0))))
    return answer
