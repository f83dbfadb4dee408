"""Taking, renewing and giving back the partitions this server feeds: leases in Redis.

Every BEAT_SECONDS a server, in one script on the Redis primary (and acknowledged by a
replica, like every write whose loss would break a promise):

* marks itself alive in ``chat:messaging:members`` until now + TTL (by Redis's clock), and
  drops the members whose time ran out;
* renews each lease it holds, if the lease is still its own (same epoch, same server).

Then it decides, from the live members and the leases it read:

* a partition's place is the server the ``partitioning`` section gives it to, while that
  server is alive; otherwise the live member that ranks first for the partition by
  rendezvous hashing, which every server computes alike, so a dead server's partitions are
  spread over the survivors without talking it over;
* a partition in its place and held by nobody is taken (``SET NX`` with a new epoch);
* a partition held here whose place is elsewhere is given back the graceful way: the
  fan-out stops reading it, commits where it stopped and redirects its streams, and only
  then is the lease deleted, so the next holder starts where this one stopped.

A lease is held locally only until the start of its last successful renewal plus the TTL:
the key in Redis lives at least that long, so no other server can hold it before this one
stops feeding it. A server frozen for longer (SIGSTOP, a long pause) therefore delivers
nothing when it wakes: the fan-out asks ``holds`` before each batch.

Why leases in Redis rather than Kafka's group protocol: the fan-out already assigns its
partitions by hand and moves them gracefully, the replicated Redis is already what fences
ids and claims, and a lease's epoch and deadline are ours to check where it matters (before
each batch is delivered). librdkafka's assignors would hand partitions to whichever member,
without the operator's placement, and revoke them inside ``poll``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.client import Pipeline

from chatlib.live_config import LiveSection
from chatlib.ownership import STACK_KEYS, Holder, LeaseKeys, Owner, OwnerView
from chatlib.partitioning import Partitioning
from chatlib.redis_client import durably

logger = logging.getLogger(__name__)
HELD = Gauge("messaging_partition_leases", "Partition leases this server holds")
MOVES = Counter("messaging_partition_lease_moves_total", "Partition leases", ["change"])

#: How long a lease lives unless renewed: the longest a dead server's partitions wait for a
#: new holder. Longer than a Redis failover (about 3 s here), so one does not move them all.
TTL_MS = 8_000
BEAT_SECONDS = 1.0
#: How long a partition given back waits for the fan-out to let go of it (a commit) before its
#: lease is deleted; past it the lease runs out on its own.
HAND_OVER_SECONDS = 30.0

# KEYS: the members set, then the owner key of each lease held; ARGV: this server, the TTL,
# then the value of each lease held. Returns the live members and, per lease, 1 if renewed.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local renewed = {}
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ttl)
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), renewed}
"""
# KEYS: owner key, epoch key; ARGV: server, target, TTL, "1" to adopt a lease held in this
# server's name (by its previous process, after a restart). The new epoch, or 0 if held.
_TAKE = """
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[4] ~= '1' or string.match(current, '^%d+ (%S+) ') ~= ARGV[1] then return 0 end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return epoch
"""
_GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_LEAVE = "return redis.call('ZREM', KEYS[1], ARGV[1])"


def rank(server: str, partition: int) -> bytes:
    """Rendezvous hashing: each partition goes to the live server with the highest rank."""
    return hashlib.blake2b(f"{server}/{partition}".encode(), digest_size=8).digest()


class PartitionLeases:
    """This server's partition leases. ``apply`` tells the fan-out the partitions held after
    each change (and returns at once); ``settled`` returns once it has applied the last."""

    def __init__(
        self,
        redis: aioredis.Redis,
        name: str,
        target: str,
        partitioning: LiveSection[Partitioning],
        view: OwnerView,
        apply: Callable[[frozenset[int]], None],
        settled: Callable[[], Awaitable[None]],
        ttl_ms: int = TTL_MS,
        keys: LeaseKeys = STACK_KEYS,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._name = name
        self._target = target
        self._partitioning = partitioning
        self._view = view
        self._apply = apply
        self._settled = settled
        self._handing_over: set[asyncio.Task[None]] = set()
        self._ttl = ttl_ms / 1000
        self._ttl_ms = ttl_ms
        #: Partition -> the lease value held and the local deadline it is held until.
        self._held: dict[int, tuple[str, float]] = {}
        self._applied: frozenset[int] | None = None
        self._started = False
        self.members: list[str] = []

    def holds(self, partition: int) -> bool:
        """True while this server may feed the partition's streams (checked per batch)."""
        held = self._held.get(partition)
        return held is not None and time.monotonic() < held[1]

    def held(self) -> frozenset[int]:
        now = time.monotonic()
        return frozenset(p for p, (_, until) in self._held.items() if now < until)

    async def check(self) -> str | None:
        """Readiness: every partition placed on this server is held here (it is not while a
        partition is still coming back from a server that took it over)."""
        missing = self._partitioning.get().owned_by(self._name) - self.held()
        if missing:
            listed = ", ".join(map(str, sorted(missing)))
            return f"partitions {listed} are placed here but not held here yet"
        return None

    def epoch(self, partition: int) -> int | None:
        held = self._held.get(partition)
        return int(held[0].split(" ", 1)[0]) if held is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        """Beat, take and give back until ``stop``; then give every lease back."""
        while not stop.is_set():
            try:
                await self.turn()
            except Exception as exc:  # leases that stop being renewed stop delivery
                if isinstance(exc, aioredis.RedisError | OSError):
                    logger.warning("partition leases not renewed: %s", exc)
                else:
                    logger.exception("partition leases not renewed")
                await self._follow_held()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BEAT_SECONDS)
        await self.leave()

    async def turn(self) -> None:
        """One beat: renew, read, then take and give back what the placement says."""
        started = time.monotonic()
        partitions = self._partitioning.get().partitions
        held = sorted(self._held)
        values = [self._held[p][0] for p in held]

        async def beat(pipe: Pipeline) -> None:
            pipe.eval(
                _BEAT,
                1 + len(held),
                self._keys.members,
                *(self._keys.owner(p) for p in held),
                self._name,
                str(self._ttl_ms),
                *values,
            )
            pipe.mget([self._keys.owner(p) for p in range(partitions)])

        (members, renewed), owners = await durably(self._redis, beat)
        lost = []
        for partition, value, ok in zip(held, values, renewed, strict=True):
            if ok:
                self._held[partition] = (value, started + self._ttl)
            else:
                lost.append(partition)
                del self._held[partition]
        if lost:
            # Another server holds them now: this one was away longer than a lease.
            MOVES.labels(change="lost").inc(len(lost))
            logger.error("lost the leases of partitions %s", ", ".join(map(str, lost)))
        self.members = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
        holders = {}
        for partition, raw in enumerate(owners):
            holder = Holder.decode(raw)
            if holder is not None:
                holders[partition] = holder
        self._view.update(holders)
        await self._follow_held()
        await self._give_back(
            [p for p in sorted(self._held) if self.place(p) not in (self._name, None)]
        )
        await self._take(
            [p for p in range(partitions) if p not in holders and self.place(p) == self._name]
        )
        if not self._started:
            # Leases still in this server's name are its previous process's (it died without
            # giving them back): take them over now rather than wait for them to run out.
            self._started = True
            await self._take(
                [p for p, h in holders.items() if h.name == self._name and p not in self._held],
                adopt=True,
            )

    def next_owner(self, partition: int) -> Owner:
        """Where the streams of a partition this server lets go should go: its new holder if
        known, else the server it is placed on, else here (the refusal will redirect)."""
        holder = self._view.holder(partition)
        if holder is not None and holder.name != self._name:
            return Owner(holder.name, holder.target)
        place = self.place(partition)
        server = self._partitioning.get().server(place) if place is not None else None
        if server is not None and server.name != self._name:
            return Owner(server.name, server.target)
        return Owner(self._name, self._target)

    def place(self, partition: int) -> str | None:
        """Where the partition belongs now: its placed server if alive, else the live member
        that ranks first for it (None with no live member)."""
        alive = set(self.members)
        config = self._partitioning.get()
        with contextlib.suppress(LookupError):
            placed = config.owner(partition).name
            if placed in alive:
                return placed
        if not alive:
            return None
        return max(alive, key=lambda server: rank(server, partition))

    async def _take(self, partitions: list[int], adopt: bool = False) -> None:
        if not partitions:
            return
        started = time.monotonic()

        async def take(pipe: Pipeline) -> None:
            for p in partitions:
                pipe.eval(
                    _TAKE,
                    2,
                    self._keys.owner(p),
                    self._keys.epoch(p),
                    self._name,
                    self._target,
                    self._ttl_ms,
                    "1" if adopt else "0",
                )

        epochs = await durably(self._redis, take)
        taken = []
        for partition, epoch in zip(partitions, epochs, strict=True):
            if int(epoch) > 0:
                value = Holder(int(epoch), self._name, self._target).encode()
                self._held[partition] = (value, started + self._ttl)
                taken.append(f"{partition}@{int(epoch)}")
        if taken:
            MOVES.labels(change="taken").inc(len(taken))
            logger.info("took partitions (at epochs) %s", ", ".join(taken))
        await self._follow_held()

    async def _give_back(self, partitions: list[int]) -> None:
        """Stop feeding the partitions at once (``holds`` is false from here on); delete their
        leases once the fan-out has let go of them, in the background, so the beat goes on
        meanwhile (a fan-out slowed by Kafka must not let every other lease run out)."""
        if not partitions:
            return
        values = {p: self._held.pop(p)[0] for p in partitions}
        await self._follow_held()
        task = asyncio.create_task(self._hand_over(values), name="lease hand-over")
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)

    async def _hand_over(self, values: dict[int, str]) -> None:
        listed = ", ".join(map(str, values))
        try:
            # The fan-out lets go first (commit, redirect): the next holder starts where it
            # stopped. Past the bound the leases simply run out (nothing is delivered here
            # meanwhile: the partitions are no longer held).
            await asyncio.wait_for(self._settled(), HAND_OVER_SECONDS)

            async def give(pipe: Pipeline) -> None:
                for p, value in values.items():
                    pipe.eval(_GIVE_BACK, 1, self._keys.owner(p), value)

            await durably(self._redis, give)
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("partitions %s not handed over (their leases run out): %s", listed, exc)
            return
        MOVES.labels(change="given back").inc(len(values))
        logger.info("gave back partitions %s", listed)

    async def _follow_held(self) -> None:
        held = self.held()
        lapsed = sorted(set(self._held) - held)
        if lapsed:
            logger.error("leases of partitions %s ran out before they were renewed", lapsed)
        for partition in lapsed:
            del self._held[partition]
        HELD.set(len(held))
        if held != self._applied:
            self._apply(held)
            self._applied = held

    async def leave(self) -> None:
        """Leave the members, then give every lease back (a graceful stop): the survivors
        place the partitions among themselves and take them at once, not after the TTL."""
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._redis.eval(_LEAVE, 1, self._keys.members, self._name)
            # Redirects name the partitions' next places, among the servers that stay.
            self.members = [m for m in self.members if m != self._name]
            await self._give_back(sorted(self._held))
        await self.handed_over()

    async def handed_over(self) -> None:
        """Return once every partition given back so far is handed over (or given up on)."""
        if self._handing_over:
            await asyncio.wait(set(self._handing_over))
