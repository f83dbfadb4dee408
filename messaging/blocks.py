"""Blocking: who blocked whom, and the one question the send path asks of it.

The rows are in Cassandra's ``blocks`` (messaging owns it). A send in a direct chat asks
whether either member blocked the other; that answer is cached per pair on every messaging
server, so a send costs a dict lookup. A change is announced on ``chat:blocks`` and answered
only once every server has dropped the pair (``chatlib/subscription.py:announce``), so a send
that follows the answer, on any server, reads the block. While this server's subscription is
down it does not trust its cache at all and reads Cassandra per send.

A read that began before an announcement and ends after it must not put the old answer back:
each announcement (and each re-read of the whole state) bumps ``_epoch``, and a read only
caches its answer if the epoch did not move meanwhile.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from prometheus_client import Gauge

from chatlib.cassandra import AsyncSession
from chatlib.errors import InvalidArgument, NotFound, PermissionDenied
from chatlib.settings import RedisAccess
from chatlib.subscription import ChannelFollower, ack_channel, announce
from messaging.history_api import HistoryApi

logger = logging.getLogger(__name__)

CHANNEL = "chat:blocks"
CACHE_SIZE = 100_000
SUBSCRIBED = Gauge("messaging_blocks_subscribed", "1 while the block announcements are followed")


@dataclass(frozen=True)
class Blocked:
    user_id: int
    blocked_at_ms: int


class Blocks(ChannelFollower):
    def __init__(
        self,
        db: AsyncSession,
        redis: aioredis.Redis,
        access: RedisAccess,
        history: HistoryApi,
        name: str,
    ) -> None:
        super().__init__(access, CHANNEL, SUBSCRIBED)
        self._db = db
        self._redis = redis
        self._history = history
        self._name = name
        #: (lower id, higher id) -> which of the two blocked the other.
        self._pairs: OrderedDict[tuple[int, int], frozenset[int]] = OrderedDict()
        self._epoch = 0

    async def blockers(self, a: int, b: int) -> frozenset[int]:
        """Which of ``a`` and ``b`` has blocked the other (usually nobody)."""
        pair = (a, b) if a < b else (b, a)
        found = self._pairs.get(pair)
        if found is not None and self.subscribed:
            self._pairs.move_to_end(pair)
            return found
        epoch = self._epoch
        rows = await self._db.execute(
            "SELECT user_id, blocked_id FROM blocks"
            " WHERE user_id IN (?, ?) AND blocked_id IN (?, ?)",
            (a, b, a, b),
        )
        found = frozenset(r.user_id for r in rows if r.user_id != r.blocked_id)
        if epoch == self._epoch and self.subscribed:
            self._pairs[pair] = found
            if len(self._pairs) > CACHE_SIZE:
                self._pairs.popitem(last=False)
        return found

    async def block(self, user: int, other: int) -> None:
        await self._check(user, other)
        await self._change(
            user,
            other,
            "INSERT INTO blocks (user_id, blocked_id, blocked_at) VALUES (?, ?, ?)",
            (user, other, int(time.time() * 1000)),
        )

    async def unblock(self, user: int, other: int) -> None:
        await self._check(user, other)
        await self._change(
            user, other, "DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", (user, other)
        )

    async def blocked_by(self, user: int) -> list[Blocked]:
        """Whom ``user`` blocked, newest first."""
        rows = await self._db.execute(
            "SELECT blocked_id, blocked_at FROM blocks WHERE user_id = ?", (user,)
        )
        found = [Blocked(r.blocked_id, _ms(r.blocked_at)) for r in rows]
        return sorted(found, key=lambda b: (-b.blocked_at_ms, b.user_id))

    async def _check(self, user: int, other: int) -> None:
        if not other:
            raise InvalidArgument("user_id is required")
        if other == user:
            raise PermissionDenied("user_id is your own: nobody can block themselves")
        if other not in await self._history.usernames([other]):
            raise NotFound(f"user {other} does not exist")

    async def _change(
        self, user: int, other: int, statement: str, values: tuple[object, ...]
    ) -> None:
        async def write() -> None:
            await self._db.execute(statement, values)
            self._forget(user, other)

        await announce(self._redis, CHANNEL, {"pair": [user, other]}, write)

    def _forget(self, a: int, b: int) -> None:
        self._epoch += 1
        self._pairs.pop((a, b) if a < b else (b, a), None)

    # --- following the announcements ---------------------------------------------------

    async def snapshot(self) -> None:
        """After (re)subscribing nothing cached can be trusted: announcements may have been
        missed meanwhile. The cache refills from Cassandra."""
        self._epoch += 1
        self._pairs.clear()

    async def announced(self, raw: bytes) -> None:
        try:
            announcement = json.loads(raw)
            ident = str(announcement["id"])
            a, b = (int(u) for u in announcement["pair"])
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("ignoring a malformed block announcement: %s", exc)
            return
        self._forget(a, b)
        await self._client.publish(ack_channel(CHANNEL, ident), self._name)

    def describe_loss(self, lost_for: float, reason: str) -> str:
        return (
            f"block announcements lost {lost_for:.0f}s ago ({reason}); every direct send reads "
            "Cassandra until they are back"
        )


def _ms(value: datetime | None) -> int:
    """A Cassandra timestamp (the driver gives a naive datetime in UTC) in ms since the epoch."""
    return int(value.replace(tzinfo=UTC).timestamp() * 1000) if value is not None else 0
