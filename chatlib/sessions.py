"""Sessions in Redis: the one module that writes them.

A session is one login on one device. Its id (``sid`` in every access token it is given)
stays the same while its refresh token rotates, so the session *family* is one id: revoking
it refuses every access token it was ever given and every refresh token, spent or not.

- ``chat:session:<sid>``: a hash of ``user_id``, ``generation`` (of the refresh token that is
  current) and ``access_until`` (when the newest access token it was given expires). It lives
  as long as the refresh token.
- ``chat:user-sessions:<user id>``: the user's session ids, for logout everywhere and kicks.

Rotation is one script: of any number of concurrent refreshes with the same token exactly
one finds its generation current and moves it on, and records when (``rotated_at``). A spent
token presented again is what a thief replaying a stolen token looks like, and ends the family;
but a browser's second tab, or a phone retrying a refresh whose answer it lost, presents the
just-spent generation within moments of the winner. So for ``refresh_reuse_seconds`` (live
config section ``sessions``) after the rotation, the just-spent generation is answered with the
winner's rotation: the BFF issues the same tokens again (they are a function of the session,
the generation and the rotation's time). An older generation, or the just-spent one later, ends
the family. (Redis runs scripts one at a time, which is what makes "exactly one" hold.) The
scripts touch keys they are not given; on a Redis Cluster the two key families would need one
hash tag per user.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.asyncio.client import Pipeline

from chatlib import revocations
from chatlib.redis_client import durably

SESSION = "chat:session:{}"
USER_SESSIONS = "chat:user-sessions:{}"

REVOKED = Counter("chat_sessions_revoked_total", "Sessions revoked, by why", ["cause"])
for _cause in ("logout", "logout_all", "kick", "reuse"):
    REVOKED.labels(cause=_cause)

# KEYS: the session. ARGV: the generation presented, the new access token's expiry, the TTL,
# now (seconds), the reuse interval (seconds). Returns {0} (unknown), {1, user, now} (rotated),
# {2, user} (a spent generation: reuse), {3, user, rotated_at} (the just-spent generation within
# the reuse interval: the winner's rotation again).
_ROTATE = """
local found = redis.call('HMGET', KEYS[1], 'user_id', 'generation', 'rotated_at')
if not found[1] then return {0, 0, 0} end
local current = tonumber(found[2])
local presented = tonumber(ARGV[1])
if presented == current then
  redis.call('HSET', KEYS[1], 'generation', current + 1, 'access_until', ARGV[2],
    'rotated_at', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', 'chat:user-sessions:' .. found[1], ARGV[3])
  return {1, found[1], tonumber(ARGV[4])}
end
if presented == current - 1 and found[3]
    and tonumber(ARGV[4]) - tonumber(found[3]) <= tonumber(ARGV[5]) then
  return {3, found[1], tonumber(found[3])}
end
if presented < current then return {2, found[1], 0} end
return {0, 0, 0}
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
    REPEATED = "repeated"  # the just-spent generation, soon enough: the winner's rotation


@dataclass(frozen=True)
class Rotation:
    outcome: Outcome
    user_id: int
    #: When the rotation that spent the presented generation happened (ROTATED: now;
    #: REPEATED: the winner's): what the new tokens are issued at.
    rotated_at: int = 0


class SessionStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._rotate = client.register_script(_ROTATE)
        self._end = client.register_script(_END)

    async def create(self, user_id: int, access_until: int, ttl: int) -> str:
        session_id = secrets.token_hex(16)

        async def queue(pipe: Pipeline) -> None:
            pipe.hset(
                SESSION.format(session_id),
                mapping={"user_id": user_id, "generation": 0, "access_until": access_until},
            )
            pipe.expire(SESSION.format(session_id), ttl)
            pipe.sadd(USER_SESSIONS.format(user_id), session_id)
            pipe.expire(USER_SESSIONS.format(user_id), ttl)

        await durably(self._client, queue)
        return session_id

    async def rotate(
        self,
        session_id: str,
        generation: int,
        access_until: int,
        ttl: int,
        *,
        now: int,
        reuse_seconds: int,
    ) -> Rotation:
        """Spend refresh token ``generation`` of the session; see the module's docstring."""
        # A generation spent on a primary that fails over before a replica has it could be
        # spent again: the rotation is acknowledged once a replica holds it.
        (reply,) = await durably(
            self._client,
            lambda pipe: self._rotate(
                keys=[SESSION.format(session_id)],
                args=[generation, access_until, ttl, now, reuse_seconds],
                client=pipe,
            ),
        )
        outcome, user_id, at = reply
        found = {
            0: Outcome.UNKNOWN,
            1: Outcome.ROTATED,
            2: Outcome.REUSED,
            3: Outcome.REPEATED,
        }[int(outcome)]
        if found is Outcome.REUSED:
            await self.end([session_id], "a spent refresh token was used again", "reuse")
        return Rotation(found, int(user_id), int(at))

    async def end(
        self, session_ids: list[str], reason: str, cause: str, fallback_until: float = 0.0
    ) -> list[str]:
        """Delete the sessions and revoke their tokens everywhere; returns once every service
        has applied it (or two seconds passed). A session no longer stored is revoked until
        ``fallback_until`` (the expiry of the token that asked), so a token whose refresh
        side has expired can still log out. Returns the ids revoked."""
        raw = []
        if session_ids:
            (raw,) = await durably(
                self._client, lambda pipe: self._end(args=session_ids, client=pipe)
            )
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

    async def sessions_of(self, user_id: int) -> list[str]:
        members = await self._client.smembers(USER_SESSIONS.format(user_id))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def end_user(self, user_id: int, reason: str, cause: str) -> list[str]:
        """End every session of the user (logout everywhere, an operator's kick)."""
        return await self.end(await self.sessions_of(user_id), reason, cause)
