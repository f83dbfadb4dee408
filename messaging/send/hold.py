"""Holding sends while partitions are added (``config_service/grow.py``).

Adding partitions moves users to other partitions, so the old partitions must end at one
known offset each: nothing may be produced under the old count once the ends are read, and
nothing under the new count before. While the ``partitioning`` section says ``hold_sends``,
every produce of this server waits here (before its records are made, so they are made with
the count that is current when it goes on), and once none is in flight the server says so in
Redis: ``chat:partitioning:held:<server>`` holds the section version it holds sends under.
The grower reads the ends only when every live messaging server has said so.

A send held longer than ``HOLD_SECONDS`` is answered UNAVAILABLE (its retry is safe: the
claim keeps its message id); a growth holds sends for well under a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from chatlib.errors import Unavailable
from chatlib.live_config import LiveSection
from chatlib.ownership import STACK_KEYS, LeaseKeys
from chatlib.partitioning import Partitioning

logger = logging.getLogger(__name__)

HOLD_SECONDS = 10.0
#: How long a server's word that it holds sends is kept (the grower reads it at once).
SAID_SECONDS = 120


class SendHold:
    def __init__(
        self,
        partitioning: LiveSection[Partitioning],
        redis: aioredis.Redis,
        server: str,
        keys: LeaseKeys = STACK_KEYS,
    ) -> None:
        self._keys = keys
        self._partitioning = partitioning
        self._redis = redis
        self._server = server
        self._open = asyncio.Event()
        self._producing = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._changed(partitioning.get())
        partitioning.on_change(self._changed)

    def _changed(self, value: Partitioning) -> None:
        if not value.hold_sends:
            self._open.set()
            return
        self._open.clear()
        if self._task is not None:
            self._task.cancel()
        version = self._partitioning.version
        self._task = asyncio.get_running_loop().create_task(self._say_held(version))

    async def _say_held(self, version: int) -> None:
        """Once nothing is in flight, tell the grower that sends are held under section
        ``version`` (again each second while holding, in case Redis lost it)."""
        while not self._open.is_set():
            await self._idle.wait()
            if self._open.is_set():
                return
            try:
                await self._redis.set(self._keys.held(self._server), str(version), ex=SAID_SECONDS)
            except (aioredis.RedisError, OSError) as exc:
                logger.warning("could not say that sends are held: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._open.wait(), 1.0)

    @contextlib.asynccontextmanager
    async def producing(self) -> AsyncIterator[None]:
        """Around making a send's records and producing them."""
        if not self._open.is_set():
            try:
                await asyncio.wait_for(self._open.wait(), HOLD_SECONDS)
            except TimeoutError:
                raise Unavailable(
                    "sends are held while partitions are added; retry in a moment"
                ) from None
        self._producing += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._producing -= 1
            if not self._producing:
                self._idle.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
