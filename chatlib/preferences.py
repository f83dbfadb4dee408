"""A user's notification preferences, in Redis (``chat:prefs:{user}``): the BFF writes them
(``PUT /v1/me/notifications``), the notifier reads them. Missing means the default."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Preferences:
    #: Whether notifications carry a preview of the message text.
    previews: bool = True


def _key(user: int) -> str:
    return f"chat:prefs:{user}"


async def get(redis: aioredis.Redis, user: int) -> Preferences:
    previews = await redis.hget(_key(user), "previews")
    return Preferences(previews=previews != b"0")


async def put(redis: aioredis.Redis, user: int, preferences: Preferences) -> None:
    await redis.hset(_key(user), "previews", "1" if preferences.previews else "0")
