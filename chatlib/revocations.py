"""Revoked sessions: a set in Redis, pushed to every service by pub/sub, checked on every call.

Every service that accepts access tokens keeps the set in memory (a dict lookup per call, no
round trip) and follows it as ``chatlib/subscription.py`` says: subscribe first, then read
the set, so no revocation can fall between the two; re-read after every reconnect and every
30 s.

A revocation is acknowledged to whoever asked for it (logout, kick, a refresh token reused)
only after every subscribed service has applied it and answered on a channel of its own: from
then on the session's tokens are refused everywhere and its live streams have been told to
end. ``PUBLISH`` answers how many subscribers received the announcement, so the revoker knows
how many answers to wait for.

An entry stays until the last access token its session was given has expired (the session
records when that is); after that the token would be refused anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.client import Pipeline

from chatlib import subscription
from chatlib.redis_client import durably
from chatlib.settings import RedisAccess
from chatlib.subscription import ChannelFollower, announce

logger = logging.getLogger(__name__)

KEY = "chat:revoked"
CHANNEL = "chat:revocations"

REVOKED = Gauge("chat_revoked_sessions", "Revoked sessions whose tokens could still be live")
APPLIED = Counter("chat_revocations_applied_total", "Revocation announcements applied here")
SUBSCRIBED = Gauge("chat_revocations_subscribed", "1 while the revocation subscription is live")

#: Called with the revoked session ids and why (on the event loop; must not block).
Listener = Callable[[list[str], str], object]


def ack_channel(announcement: str) -> str:
    return subscription.ack_channel(CHANNEL, announcement)


@dataclass(frozen=True)
class Revoked:
    until: float
    reason: str


class Revocations(ChannelFollower):
    """This process's copy of the revocation set."""

    def __init__(self, access: RedisAccess, name: str) -> None:
        super().__init__(access, CHANNEL, SUBSCRIBED)
        self._name = name
        self._revoked: dict[str, Revoked] = {}
        self._listeners: list[Listener] = []

    def reason(self, session_id: str) -> str | None:
        """Why the session was revoked, or None if it was not."""
        found = self._revoked.get(session_id)
        return None if found is None else found.reason

    def on_revoke(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self, stop: asyncio.Event) -> None:
        """Read the set once (failing if Redis does not answer), then follow it until
        ``stop``."""
        await self.snapshot()
        self.follow_in_background(stop, "revocations")

    def describe_loss(self, lost_for: float, reason: str) -> str:
        return (
            f"revocation subscription lost {lost_for:.0f}s ago ({reason}); sessions revoked "
            "meanwhile are refused once it is back"
        )

    async def snapshot(self) -> None:
        now = time.time()
        entries: list[tuple[bytes, float]] = await self._client.zrangebyscore(  # type: ignore[assignment]
            KEY, now, "+inf", withscores=True
        )
        fresh = {}
        for raw, until in entries:
            session_id, _, reason = raw.decode().partition(" ")
            fresh[session_id] = Revoked(float(until), reason or "the session was revoked")
        new = [s for s in fresh if s not in self._revoked]
        self._revoked = fresh
        REVOKED.set(len(fresh))
        for session_id in new:
            self._tell([session_id], fresh[session_id].reason)

    async def announced(self, raw: bytes) -> None:
        try:
            announcement = json.loads(raw)
            ident = str(announcement["id"])
            sessions = {str(k): float(v) for k, v in dict(announcement["sessions"]).items()}
            reason = str(announcement["reason"])
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("ignoring a malformed revocation announcement: %s", exc)
            return
        now = time.time()
        for session_id, until in sessions.items():
            self._revoked[session_id] = Revoked(until, reason)
        self._revoked = {k: v for k, v in self._revoked.items() if v.until > now}
        REVOKED.set(len(self._revoked))
        APPLIED.inc()
        self._tell(list(sessions), reason)
        await self._client.publish(ack_channel(ident), self._name)

    def _tell(self, sessions: list[str], reason: str) -> None:
        for listener in self._listeners:
            try:
                listener(sessions, reason)
            except Exception:
                logger.exception("a revocation listener failed")


async def revoke(
    client: aioredis.Redis, sessions: Mapping[str, float], reason: str, wait: float = 2.0
) -> tuple[int, int]:
    """Record the sessions (id -> when their last access token expires) as revoked, announce
    it, and wait up to ``wait`` seconds until every subscribed service has applied it.

    Returns (services that applied it, services that received it). Fewer means one did not
    answer in time; it still refuses the tokens as soon as it reads the set again.
    """
    if not sessions:
        return 0, 0
    now = time.time()
    # One member per session; the reason rides along so a service that reads the set after
    # a reconnect can still say why.
    members = {f"{sid} {reason}": max(until, now + 1) for sid, until in sessions.items()}

    async def queue(pipe: Pipeline) -> None:
        pipe.zadd(KEY, members)
        pipe.zremrangebyscore(KEY, "-inf", now)

    # A revocation a failover loses would let a logged-out session back in.
    return await announce(
        client,
        CHANNEL,
        {"sessions": dict(sessions), "reason": reason},
        lambda: durably(client, queue),
        wait,
    )
