"""An operator ends every session of a user (a kick), and the audit trail of kicks.

The kick is acknowledged once every service has applied the revocation (see
``chatlib.revocations``): from then on the user's tokens are refused and their live streams
have ended. Each kick is recorded first (who, whom, why, when, how many sessions), so a
kick that fails half-way still shows in the trail.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from chatlib.errors import InvalidArgument
from chatlib.sessions import SessionStore

AUDIT = "chat:audit:kicks"
#: The trail keeps this many newest entries.
AUDIT_LENGTH = 10_000
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")


async def kick(client: aioredis.Redis, operator: str, user_id: int, reason: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "action": "kick",
        "user_id": str(user_id),
        "reason": reason,
        "by": operator,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    ended = await SessionStore(client).end_user(user_id, f"ended by an operator: {reason}", "kick")
    entry["sessions_ended"] = len(ended)
    async with client.pipeline(transaction=True) as pipe:
        pipe.lpush(AUDIT, json.dumps(entry))
        pipe.ltrim(AUDIT, 0, AUDIT_LENGTH - 1)
        await pipe.execute()
    return entry


async def trail(client: aioredis.Redis, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    return [json.loads(raw) for raw in await client.lrange(AUDIT, 0, limit - 1)]


def user_id(request: web.Request) -> int:
    raw = request.match_info["user_id"]
    if not _USER_ID.fullmatch(raw) or int(raw) >= 2**63:
        raise InvalidArgument(f"user_id must be a user id (1 to 2^63-1), got {raw[:40]!r}")
    return int(raw)
