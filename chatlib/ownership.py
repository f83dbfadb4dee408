"""Who feeds each partition's live streams right now: leases in Redis, read by everyone who
routes a user to their messaging server.

A messaging server holds a partition by a lease, the key ``chat:partition:<p>:owner`` whose
value is ``"<epoch> <server> <host:port>"`` and which expires unless its holder renews it
(``messaging/streams/leases.py`` takes, renews and gives leases back). The epoch grows by one
with every new holder, so a holder that was away (frozen, cut off) finds at its next renewal
that the lease is no longer its own.

The ``partitioning`` config section says how many partitions there are and where each server
should be while it is alive; the leases say where each partition is. ``Routing`` answers with
the lease holder and falls back to the section only for a partition nobody holds (a moment,
while it changes hands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatlib.hashing import partition_for
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning

logger = logging.getLogger(__name__)

#: How often a reader of the leases reads them all again (one MGET of every partition).
REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class LeaseKeys:
    """Where the leases live (another prefix keeps a test's leases apart from the stack's)."""

    prefix: str = "chat"

    @property
    def members(self) -> str:
        return f"{self.prefix}:messaging:members"

    def owner(self, partition: int) -> str:
        return f"{self.prefix}:partition:{partition}:owner"

    def epoch(self, partition: int) -> str:
        return f"{self.prefix}:partition:{partition}:epoch"

    def held(self, server: str) -> str:
        """Where a messaging server says it holds its sends (while partitions are added),
        under which version of the ``partitioning`` section."""
        return f"{self.prefix}:partitioning:held:{server}"


#: The stack's own leases.
STACK_KEYS = LeaseKeys()


@dataclass(frozen=True)
class Holder:
    """A partition's lease: which server holds it, where clients dial it, since which epoch."""

    epoch: int
    name: str
    target: str

    def encode(self) -> str:
        return f"{self.epoch} {self.name} {self.target}"

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Holder | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        parts = text.split(" ")
        if len(parts) != 3 or not parts[0].isdigit():
            logger.warning("ignoring a malformed partition lease %r", text[:100])
            return None
        return cls(int(parts[0]), parts[1], parts[2])


class OwnerView:
    """Every partition's lease holder as last read (at most REFRESH_SECONDS old)."""

    def __init__(self, redis: aioredis.Redis, keys: LeaseKeys = STACK_KEYS) -> None:
        self._redis = redis
        self._keys = keys
        self._holders: dict[int, Holder] = {}
        self._task: asyncio.Task[None] | None = None

    def holder(self, partition: int) -> Holder | None:
        return self._holders.get(partition)

    def update(self, holders: dict[int, Holder]) -> None:
        self._holders = holders

    async def refresh(self, partitions: int) -> None:
        raw = await self._redis.mget([self._keys.owner(p) for p in range(partitions)])
        found = {}
        for partition, value in enumerate(raw):
            holder = Holder.decode(value)
            if holder is not None:
                found[partition] = holder
        self._holders = found

    def follow_in_background(self, partitioning: LiveSection[Partitioning]) -> None:
        self._task = asyncio.create_task(self._follow(partitioning), name="owner-view")

    async def _follow(self, partitioning: LiveSection[Partitioning]) -> None:
        failing = False
        while True:
            try:
                await self.refresh(partitioning.get().partitions)
                failing = False
            except (aioredis.RedisError, OSError) as exc:
                # Routing goes on with what was last read; the section covers the rest.
                if not failing:
                    logger.warning("partition leases not read, routing on the last read: %s", exc)
                failing = True
            except Exception:
                # A bug must not end the loop: routing would freeze on the last read for good.
                logger.exception("reading the partition leases failed; retrying")
            await asyncio.sleep(REFRESH_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(frozen=True)
class Owner:
    """Where a user's partition is fed: the server's name and the address clients dial."""

    name: str
    target: str


class Routing:
    """The server that feeds a partition: its lease holder, or the section's owner while no
    one holds it."""

    def __init__(self, partitioning: LiveSection[Partitioning], view: OwnerView) -> None:
        self.partitioning = partitioning
        self.view = view

    @property
    def partitions(self) -> int:
        return self.partitioning.get().partitions

    def owner(self, partition: int) -> Owner:
        holder = self.view.holder(partition)
        if holder is not None:
            return Owner(holder.name, holder.target)
        placed = self.partitioning.get().owner(partition)
        return Owner(placed.name, placed.target)

    def owner_of_user(self, user_id: int) -> tuple[int, Owner]:
        partition = partition_for(user_id, self.partitions)
        return partition, self.owner(partition)
