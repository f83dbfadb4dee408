"""Feeding live streams: consume the partitions this server holds and push to each recipient.

A ``ConsumerLoop`` (``chatlib/consumer_loop.py``) that assigns its partitions by hand. It
never awaits a client: ``StreamRegistry.publish`` only ``put_nowait``s.

What it consumes follows the partition leases this server holds (``leases.py``). Between two
fetches the loop compares what it consumes with what it holds:

* a partition let go is unassigned first, its position committed (the consumer group is
  shared by every messaging server), and only then are its streams redirected to the next
  owner, each with the cursor of the last event it was given;
* a partition taken is assigned at the committed position, so the new owner picks up where
  the old one stopped (or at the end when that is too far back to be live).

Before each batch is handed to streams, the lease of each partition is checked once more: a
server that was frozen past its leases delivers nothing of what it had already fetched.

Clients never depend on the commit: a redirected client resumes from its own cursor, and the
new owner replays whatever that cursor has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from opentelemetry import trace
from prometheus_client import Gauge

from chatlib import deliveries
from chatlib.consumer_loop import ConsumerLoop
from chatlib.errors import Unavailable
from chatlib.ownership import Owner
from chatlib.pace import Pace
from chatlib.telemetry import sampled_context
from messaging.streams.cursor import Cursor
from messaging.streams.recent import RecentDeliveries
from messaging.streams.registry import Redirect, StreamRegistry, message_event
from messaging.streams.replay import Watermarks

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
OWNED = Gauge("messaging_owned_partitions", "Partitions this server feeds live streams from")
PACE = Gauge("messaging_fanout_quick", "1 while the fan-out fetches without waiting to batch")

BATCH = 500
POLL_SECONDS = 0.2
COMMIT_SECONDS = 1.0
#: A committed position further back than this is not worth catching up on for live
#: delivery (clients replay from their own cursors); start at the end instead.
MAX_CATCH_UP = 50_000
#: How long a resume waits for the fan-out to reach the end of the log it saw (it is
#: normally one fetch behind; past this the rest arrives as live events).
REACH_SECONDS = 5.0


class FanOut(ConsumerLoop):
    def __init__(
        self,
        consumer: Consumer,
        registry: StreamRegistry,
        recent: RecentDeliveries,
        watermarks: Watermarks,
        topic: str,
        holds: Callable[[int], bool],
        group: str = "fanout",
        *,
        quick: Consumer | None = None,
        pace: Pace | None = None,
    ) -> None:
        super().__init__(
            consumer,
            topic,
            group,
            batch=BATCH,
            poll_seconds=POLL_SECONDS,
            commit_seconds=COMMIT_SECONDS,
        )
        self._watermarks = watermarks
        #: The consumer whose fetches wait to fill, and its twin answered at the first byte,
        #: polled while ``pace`` says traffic is quiet (``chatlib/pace.py``).
        self._batching = consumer
        self._quick = quick
        self._pace = pace
        self._registry = registry
        self._recent = recent
        self._holds = holds
        self._wanted: frozenset[int] | None = None
        self._next_owner: Callable[[int], Owner] = lambda p: Owner("", "")
        self._applied: frozenset[int] | None = None
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        #: Partitions whose lease was found held at the start of the current batch.
        self._live: set[int] = set()
        #: Per owned partition, the offset of the next record the fan-out will publish.
        self._next: dict[int, int] = {}
        #: Resumes waiting for the fan-out to reach an offset: (offset, future) per partition.
        self._waiting: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}

    def stuck_for(self) -> float:
        """Seconds since the loop last turned, while it has partitions to poll (else 0)."""
        return time.monotonic() - self.polled_at if self._next else 0.0

    @property
    def assigned(self) -> bool:
        """True once the fan-out consumes exactly the partitions this server holds."""
        return self._applied is not None and self._applied is self._wanted

    def follow(self, held: frozenset[int], next_owner: Callable[[int], Owner]) -> None:
        """Consume ``held`` from now on: applied before the next fetch (the rest let go, their
        positions committed and their streams redirected to ``next_owner``)."""
        self._wanted = held
        self._next_owner = next_owner
        self._settled.clear()
        self._changed.set()

    async def settled(self) -> None:
        """Return once the last ``follow`` is applied."""
        await self._settled.wait()

    def next_offset(self, partition: int) -> int:
        """Every record from this offset on will still be published to registered streams.

        A stream that registers now gets live what is at or after it; what is before it comes
        from a replay. Asking the fan-out instead of the broker makes a subscribe cost no
        round trip to Kafka.
        """
        if partition not in self._next:
            raise Unavailable(
                f"partition {partition} is not being consumed here yet; retry in a moment"
            )
        return self._next[partition]

    async def reach(self, partition: int, offset: int) -> int:
        """Wait until every record before ``offset`` has been published here (at most
        REACH_SECONDS), then return the position: a resume replays up to it, so what was in
        the log when the client came back is replayed before "caught up", not after."""
        position = self.next_offset(partition)
        if position >= offset:
            return position
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(partition, []).append((offset, future))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REACH_SECONDS):
                await future
        return self.next_offset(partition)

    def _wake_waiting(self) -> None:
        for partition in list(self._waiting):
            position = self._next.get(partition)
            still = []
            for offset, future in self._waiting[partition]:
                if position is None or position >= offset:
                    # Reached, or the partition moved away (the caller then finds out).
                    if not future.done():
                        future.set_result(None)
                elif not future.done():
                    still.append((offset, future))
            if still:
                self._waiting[partition] = still
            else:
                del self._waiting[partition]

    # The loop's hooks.

    async def start(self) -> None:
        """Nothing to join: partitions are assigned by hand, as the leases held say."""

    async def ready(self, stop: asyncio.Event) -> bool:
        """Apply a changed ownership first; poll only while something is owned (else wait for
        a change, a second at most, so the loop still turns)."""
        self._changed.clear()
        if self._wanted is not self._applied:
            try:
                await self._rebalance()
            except KafkaException as exc:
                # Nothing half done stays: what was released is released, and the rest is
                # worked out again from the current assignment.
                logger.warning("fan-out rebalance failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
                return False
        if self._next:
            self._follow_pace()
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                stopping = asyncio.ensure_future(stop.wait())
                changing = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({stopping, changing}, return_when="FIRST_COMPLETED")
                finally:
                    stopping.cancel()
                    changing.cancel()
        return False

    def _follow_pace(self) -> None:
        """Poll the consumer the pace asks for: the partitions move to it at the offsets the
        fan-out publishes next (what the other one fetched beyond is fetched again)."""
        if self._pace is None or self._quick is None:
            return
        wanted = self._quick if self._pace.note(0) else self._batching
        if wanted is self.consumer:
            return
        positions = [TopicPartition(self.topic, p, offset) for p, offset in self._next.items()]
        try:
            wanted.incremental_assign(positions)
        except KafkaException as exc:
            logger.warning("fan-out kept its consumer: the other refused its partitions: %s", exc)
            return
        try:
            self.consumer.unassign()
        except KafkaException as exc:  # it is not polled any more either way
            logger.warning("fan-out could not unassign the consumer it left: %s", exc)
        self.switch_consumer(wanted)
        PACE.set(wanted is self._quick)

    async def handle(self, records: list[Message]) -> None:
        if self._pace is not None:
            self._pace.note(len(records))
        # Once per batch, not per record: a lease runs out on the scale of seconds.
        self._live = {p for p in self._next if self._holds(p)}
        for record in records:
            self._publish(record)

    def committable(self) -> dict[int, int]:
        return dict(self._next)

    async def tick(self) -> None:
        if self._waiting:
            self._wake_waiting()

    async def _rebalance(self) -> None:
        wanted = self._wanted
        if wanted is None:
            return
        owned = set(self._next)
        released = owned - wanted
        gained = wanted - owned
        if released:
            self.consumer.incremental_unassign(
                [TopicPartition(self.topic, p) for p in sorted(released)]
            )
            # Committed before anyone is redirected: the new owner starts where this one
            # stopped.
            positions = {p: self._next[p] for p in released}
            await asyncio.to_thread(self.commit, positions, asynchronous=False)
            self.forget(released)
            for partition in sorted(released):
                del self._next[partition]
                self._recent.stop(partition)
                owner = self._next_owner(partition)
                moved = self._registry.redirect(partition, Redirect(owner.name, owner.target))
                logger.info(
                    "partition %d moved to %s: %d streams redirected", partition, owner.name, moved
                )
            self._wake_waiting()
        if gained:
            starts = await self._starts(sorted(gained))
            self.consumer.incremental_assign(starts)
            for start in starts:
                # Not marked committed: the next periodic commit records every new position,
                # also of a partition that never had a commit (or a record) before.
                self._next[start.partition] = start.offset
                self._recent.start(start.partition, start.offset)
            logger.info(
                "fan-out now consumes partitions %s of %s",
                ", ".join(f"{s.partition}@{s.offset}" for s in starts),
                self.topic,
            )
        OWNED.set(len(self._next))
        self._applied = wanted
        if self._wanted is wanted:
            self._settled.set()

    async def _starts(self, partitions: list[int]) -> list[TopicPartition]:
        committed = await asyncio.to_thread(
            self.consumer.committed, [TopicPartition(self.topic, p) for p in partitions], 10.0
        )
        starts = []
        for position in committed:
            # The start is resolved here, before anyone is told this partition is served: a
            # symbolic "end" would be resolved on the first fetch, and a record produced in
            # between would reach neither the replay nor the live stream.
            low, high = await self._watermarks.get(position.partition)
            offset = position.offset if position.offset >= 0 else high
            if high - offset > MAX_CATCH_UP:
                offset = high
            starts.append(TopicPartition(self.topic, position.partition, max(offset, low)))
        return starts

    def _publish(self, record: Message) -> None:
        partition = record.partition() or 0
        if partition not in self._live or partition not in self._next:
            # Moved away after this batch was fetched, or its lease ran out: the next holder
            # delivers it.
            return
        offset = record.offset() or 0
        self._next[partition] = offset + 1
        key = record.key()
        value = record.value() or b""
        recipient = deliveries.recipient_of(key)
        if recipient is not None:
            self._recent.add(partition, offset, recipient, value)
            # Routed by the key: copies for users without a live stream here are never decoded.
            if not self._registry.has(recipient):
                return
            online = [recipient]
            # One that does not decode is skipped (history dead-letters it; streams cannot
            # show it).
            delivery = self.decode(record)
        elif deliveries.is_group_key(key):
            # A group record: decoded once, whoever is online, and handed to its members with
            # a live stream here (the recipients it lists are the membership at its id).
            delivery = self.decode(record)
            if delivery is None:
                return
            self._recent.add_group(partition, offset, delivery.recipient_ids, value)
            has = self._registry.has
            online = [member for member in delivery.recipient_ids if has(member)]
            if not online:
                return
        else:
            logger.warning("skipping a record with a malformed key at %d@%d", partition, offset)
            return
        if delivery is None or not deliveries.streamed(delivery):
            return
        event = message_event(Cursor(partition, offset), delivery)
        parent = sampled_context(record.headers())  # type: ignore[arg-type]
        publish = self._registry.publish
        if parent is None:
            for member in online:
                publish(member, event)
            return
        with tracer.start_as_current_span(
            "messaging.deliver",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self.topic,
                "messaging.kafka.partition": partition,
                "messaging.kafka.offset": offset,
            },
        ) as span:
            span.set_attribute("chat.streams", sum(publish(member, event) for member in online))
