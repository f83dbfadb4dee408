"""Worker ids leased from Redis, so no two live processes ever mint ids with the same one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from chatlib.redis_client import durably

logger = logging.getLogger(__name__)

MAX_WORKERS = 1024
KEY = "chat:worker-lease:{}"
#: How soon a failed renewal is tried again.
RETRY_SECONDS = 0.5
# Extend only while we still hold the lease (the value is our token).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """The lease expired or was taken: minting ids now could duplicate another process's."""


class WorkerLease:
    """``SET NX PX`` on the first free ``chat:worker-lease:<n>``, renewed at a third of the TTL.

    ``valid_until`` is a local monotonic deadline computed from the *start* of each successful
    acquire or renew, so it errs on the early side: we stop minting before Redis could hand the
    id to someone else.
    """

    def __init__(self, client: aioredis.Redis, ttl_ms: int = 15_000) -> None:
        self._client = client
        self._ttl_ms = ttl_ms
        self._token = uuid.uuid4().hex
        self.worker_id = -1
        self.valid_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._on_lost: list[Callable[[], None]] = []

    @property
    def token(self) -> str:
        """This process's lease token: what names it as the holder of its worker id."""
        return self._token

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the lease is found lost (before a new one is leased)."""
        self._on_lost.append(callback)

    async def acquire(self) -> int:
        if not await self._claim():
            raise LeaseLost(f"all {MAX_WORKERS} worker ids are leased")
        self._task = asyncio.create_task(self._renew_forever(), name="worker-lease")
        return self.worker_id

    async def _claim(self) -> bool:
        for candidate in range(MAX_WORKERS):
            started = time.monotonic()
            # Held only once a replica has it: a failover must not hand the id out again.
            key = KEY.format(candidate)

            async def take(pipe: Pipeline, key: str = key) -> None:
                pipe.set(key, self._token, nx=True, px=self._ttl_ms)

            (taken,) = await durably(self._client, take)
            if taken:
                self.worker_id = candidate
                self.valid_until = started + self._ttl_ms / 1000
                logger.info("leased worker id %d", candidate)
                return True
        return False

    def check(self) -> int:
        """The worker id, or LeaseLost if the lease may have expired."""
        if self.worker_id < 0 or time.monotonic() >= self.valid_until:
            raise LeaseLost(f"worker id lease {self.worker_id} is not held")
        return self.worker_id

    async def _renew_forever(self) -> None:
        pause = self._ttl_ms / 3000
        while True:
            await asyncio.sleep(pause)
            started = time.monotonic()
            try:
                (renewed,) = await durably(self._client, self._queue_renewal)
            except Exception as exc:  # a renewal loop that ends loses the lease for good
                if not isinstance(exc, aioredis.RedisError | OSError):
                    logger.exception("renewing worker lease %d failed", self.worker_id)
                # Try again soon, not a third of the TTL later: once Redis is back the lease
                # is renewed before it runs out (or found gone and replaced) within a moment.
                pause = RETRY_SECONDS
                logger.warning("renewing worker lease %d failed: %s", self.worker_id, exc)
                if self.valid_until and time.monotonic() >= self.valid_until:
                    # Redis may already give the id to someone else: tell the owners of work
                    # done in this lease's name now, not once Redis answers again.
                    self._lost()
                continue
            pause = self._ttl_ms / 3000
            if renewed:
                self.valid_until = started + self._ttl_ms / 1000
                continue
            # Expired while Redis was unreachable (or taken over): stop minting at once, then
            # lease a worker id afresh. Any free id is safe; ids already minted stay unique
            # because no one else held the old id while we did.
            if self.valid_until:
                self._lost()
            try:
                await self._claim()
            except Exception as exc:  # noqa: BLE001 - as above
                logger.warning("leasing a new worker id failed: %r", exc)

    async def _queue_renewal(self, pipe: Pipeline) -> None:
        # A renewal a failover loses would let the key expire early on the new primary,
        # while this process still mints ids with it.
        pipe.eval(_RENEW, 1, KEY.format(self.worker_id), self._token, str(self._ttl_ms))

    def _lost(self) -> None:
        logger.error("worker lease %d was lost; minting stops until a new lease", self.worker_id)
        self.valid_until = 0.0
        for callback in self._on_lost:
            callback()

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.worker_id >= 0:
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self._client.eval(_RELEASE, 1, KEY.format(self.worker_id), self._token)
        self.valid_until = 0.0


async def held(client: aioredis.Redis, worker_id: int, token: str) -> bool:
    """True while the process that leased ``worker_id`` with ``token`` still holds it."""
    found = await client.get(KEY.format(worker_id))
    return found is not None and (found.decode() if isinstance(found, bytes) else found) == token
