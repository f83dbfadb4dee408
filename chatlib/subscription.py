"""Following state kept in Redis and announced by pub/sub (the live config, revocations).

Pub/sub is lossy, so an announcement is only a hint; the state itself is what counts:

1. subscribe to the channel first,
2. then read a snapshot of the state, so nothing announced in between can be missed,
3. apply each announcement as it comes, and read the snapshot again every 30 s in case a
   silent connection dropped one,
4. on any connection error, keep what was last read, say so (``problem``) and start again at 1
   once Redis answers, with a growing pause.

Each follower has its own connection without redis-py's silent reconnects: a reconnect the
follower did not see would skip step 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from prometheus_client import Gauge

from chatlib import redis_client
from chatlib.settings import RedisAccess

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0)


class ChannelFollower(ABC):
    def __init__(self, access: RedisAccess, channel: str, connected: Gauge) -> None:
        self._client = redis_client.follower(access)
        self._channel = channel
        self._connected = connected
        self._task: asyncio.Task[None] | None = None
        self._lost_since: float | None = None
        self._lost_reason = ""
        #: Connection failures in a row: how long to pause before the next try.
        self._failures = 0
        #: True while the subscription is live (subscribed and the snapshot read).
        self.subscribed = False
        #: How many times the subscription was lost and restored (tests and logs read it).
        self.resubscribed = 0

    @abstractmethod
    async def snapshot(self) -> None:
        """Read the whole state and apply what changed."""

    @abstractmethod
    async def announced(self, raw: bytes) -> None:
        """Apply one announcement."""

    @abstractmethod
    def describe_loss(self, lost_for: float, reason: str) -> str:
        """What is stale while the subscription is down, for readiness and logs."""

    def follow_in_background(self, stop: asyncio.Event, name: str) -> None:
        self._task = asyncio.create_task(self._run(stop), name=name)

    async def check(self) -> str | None:
        """A readiness check: the follower must be running (Redis away is only degraded)."""
        if self._task is None:
            return f"{self._channel} follower not started"
        if self._task.done():
            return f"{self._channel} follower ended: {self._task.exception()!r}"
        return None

    def problem(self) -> str | None:
        """None while subscribed; otherwise what is stale."""
        if self._lost_since is None:
            return None
        return self.describe_loss(time.monotonic() - self._lost_since, self._lost_reason)

    async def close(self) -> None:
        """After ``stop`` is set: wait for the follower, then close the connection."""
        if self._task is not None:
            await self._task
        await self._client.aclose()

    async def _run(self, stop: asyncio.Event) -> None:
        """Follow until ``stop``; never gives up on Redis."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except Exception as exc:  # a follower that ends would serve stale state for good
                if not isinstance(exc, aioredis.RedisError | OSError):
                    # Not a connection failure we know (the client library in a failover):
                    # shown whole, and followed again all the same.
                    logger.exception("%s follower failed; starting again", self._channel)
                self._lost(exc)
                pause = RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS) - 1)]
                self._failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    async def _follow(self, stop: asyncio.Event) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._channel)
            await self.snapshot()
            if self._lost_since is not None:
                logger.warning("%s subscription restored after %s", self._channel, self.problem())
                self.resubscribed += 1
            self._lost_since = None
            self._failures = 0
            self.subscribed = True
            self._connected.set(1)
            resync_at = time.monotonic() + RESYNC_SECONDS
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    await self.announced(message["data"])
                if time.monotonic() >= resync_at:
                    await self.snapshot()
                    resync_at = time.monotonic() + RESYNC_SECONDS

    def _lost(self, exc: BaseException) -> None:
        self.subscribed = False
        self._connected.set(0)
        if self._lost_since is None:
            self._lost_since = time.monotonic()
            self._lost_reason = f"{type(exc).__name__}: {exc}"
            logger.warning("%s", self.problem())


def ack_channel(channel: str, ident: str) -> str:
    """Where followers of ``channel`` acknowledge the announcement ``ident``."""
    return f"{channel}:acks:{ident}"


async def announce(
    client: aioredis.Redis,
    channel: str,
    payload: dict[str, object],
    write: Callable[[], Awaitable[object]],
    wait: float = 2.0,
) -> tuple[int, int]:
    """``write`` the state, then announce ``payload`` (given an ``id``) on ``channel`` and wait
    up to ``wait`` seconds until every follower that received it has acknowledged it
    (``ack_channel``). Listening for the answers starts before the write, so none is missed.

    Returns (followers that applied it, followers that received it). Fewer means one did not
    answer in time; it still has the change once it reads the state again.
    """
    ident = secrets.token_hex(8)
    async with client.pubsub() as acks:
        await acks.subscribe(ack_channel(channel, ident))
        await write()
        receivers = int(await client.publish(channel, json.dumps({**payload, "id": ident})))
        applied = 0
        deadline = time.monotonic() + wait
        while applied < receivers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            message = await acks.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                applied += 1
    if applied < receivers:
        logger.warning(
            "%s announcement %s: %d of %d followers confirmed within %.1fs",
            channel,
            ident,
            applied,
            receivers,
            wait,
        )
    return applied, receivers
