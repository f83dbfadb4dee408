"""Sessions in Redis: the one module that writes them.

A session is one login on one device. Its id (``sid`` in every access token it is given)
stays the same while its refresh token rotates, so the session *family* is one id: revoking
it refuses every access token it was ever given and every refresh token, spent or not.

- ``chat:session:<sid>``: a hash of ``user_id``, ``generation`` (of the refresh token that is
  current) and ``access_until`` (when the newest access token it was given expires). It lives
  as long as the refresh token.
- ``chat:user-sessions:<user id>``: the user's session ids, for logout everywhere and kicks.

Rotation is one script: of any number of concurrent refreshes with the same token exactly
one finds its generation current and moves it on; the others present a spent token, which
is what a thief replaying a stolen token looks like, so the family is revoked. (Redis runs
scripts one at a time, which is what makes "exactly one" hold.) The scripts touch keys they
are not given; on a Redis Cluster the two key families would need one hash tag per user.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis
from prometheus_client import Counter

from chatlib import revocations

SESSION = "chat:session:{}"
USER_SESSIONS = "chat:user-sessions:{}"

REVOKED = Counter("chat_sessions_revoked_total", "Sessions revoked, by why", ["cause"])
for _cause in ("logout", "logout_all", "kick", "reuse"):
    REVOKED.labels(cause=_cause)

_ROTATE = """
local found = redis.call('HMGET', KEYS[1], 'user_id', 'generation')
if not found[1] then return {0, 0} end
local current = tonumber(found[2])
local presented = tonumber(ARGV[1])
if presented == current then
  redis.call('HSET', KEYS[1], 'generation', current + 1, 'access_until', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', 'chat:user-sessions:' .. found[1], ARGV[3])
  return {1, found[1]}
end
if presented < current then return {2, found[1]} end
return {0, 0}
"""

_END = """
local out = {}
for i, sid in ipairs(ARGV) do
  local key = 'chat:session:' .. sid
  local found = redis.call('HMGET', key, 'user_id', 'access_until')
  if found[1] then
    redis.call('DEL', key)
    redis.call('SREM', 'chat:user-sessions:' .. found[1], sid)
    table.insert(out, sid)
    table.insert(out, found[2])
  end
end
return out
"""


class Outcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"  # never existed, expired, or already revoked
    REUSED = "reused"  # a spent generation: the family has been revoked


@dataclass(frozen=True)
class Rotation:
    outcome: Outcome
    user_id: int


class SessionStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._rotate = client.register_script(_ROTATE)
        self._end = client.register_script(_END)

    async def create(self, user_id: int, access_until: int, ttl: int) -> str:
        session_id = secrets.token_hex(16)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(
                SESSION.format(session_id),
                mapping={"user_id": user_id, "generation": 0, "access_until": access_until},
            )
            pipe.expire(SESSION.format(session_id), ttl)
            pipe.sadd(USER_SESSIONS.format(user_id), session_id)
            pipe.expire(USER_SESSIONS.format(user_id), ttl)
            await pipe.execute()
        return session_id

    async def rotate(
        self, session_id: str, generation: int, access_until: int, ttl: int
    ) -> Rotation:
        """Spend refresh token ``generation`` of the session; see the module's docstring."""
        outcome, user_id = await self._rotate(
            keys=[SESSION.format(session_id)], args=[generation, access_until, ttl]
        )
        found = {0: Outcome.UNKNOWN, 1: Outcome.ROTATED, 2: Outcome.REUSED}[int(outcome)]
        if found is Outcome.REUSED:
            await self.end([session_id], "a spent refresh token was used again", "reuse")
        return Rotation(found, int(user_id))

    async def end(
        self, session_ids: list[str], reason: str, cause: str, fallback_until: float = 0.0
    ) -> list[str]:
        """Delete the sessions and revoke their tokens everywhere; returns once every service
        has applied it (or two seconds passed). A session no longer stored is revoked until
        ``fallback_until`` (the expiry of the token that asked), so a token whose refresh
        side has expired can still log out. Returns the ids revoked."""
        raw = await self._end(args=session_ids) if session_ids else []
        pairs = iter(raw)
        until = {
            (sid.decode() if isinstance(sid, bytes) else str(sid)): float(at)
            for sid, at in zip(pairs, pairs, strict=True)
        }
        for sid in session_ids:
            if sid not in until and fallback_until > time.time():
                until[sid] = fallback_until
        if until:
            await revocations.revoke(self._client, until, reason)
            REVOKED.labels(cause=cause).inc(len(until))
        return list(until)

    async def end_user(self, user_id: int, reason: str, cause: str) -> list[str]:
        """End every session of the user (logout everywhere, an operator's kick)."""
        members = await self._client.smembers(USER_SESSIONS.format(user_id))
        ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return await self.end(ids, reason, cause)
