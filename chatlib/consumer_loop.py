"""One Kafka read loop for every consumer of the log: the history writer, the live fan-out and
the notifier are each a ``ConsumerLoop`` that says what to do with a batch.

The loop owns what they share: polling (a thread, so the event loop never blocks), dropping
consumer errors, the lag metric, committing only what the consumer says is done (its effects
are durable: written, published, notified), decoding records with dead letters for those that
do not decode, readiness, and a failed batch handled again after a pause, never skipped. What
differs is in the hooks: ``start`` (subscribe, or assign by hand), ``ready`` (whether to poll
now), ``handle`` (the work on a batch), ``committable`` (offsets whose work is done), ``tick``
(after every turn), ``stopping`` (before the last commit), ``revoked`` (the group took
partitions away) and ``replaced`` (a consumer that failed for good was replaced).

The loop also watches each partition's offsets: records follow one another within an
assignment, so a forward jump means records were skipped, and that is logged as an error.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from chatlib import deliveries, ops
from chatlib.kafka import AsyncProducer, LagReporter, ProduceFailed, Record, failed, fetch

logger = logging.getLogger(__name__)

#: Pause before a batch whose work failed is handled again.
RETRY_SECONDS = 1.0
#: A group member that lost its partitions (the group went on without it: a broker outage)
#: and has been given none back for this long is replaced by a new consumer. Seen: after the
#: single broker restarted, a writer with a static group.instance.id polled for minutes
#: without ever joining again, while the notifier beside it (dynamic) was back in seconds.
REJOIN_SECONDS = 30.0


class DeadLetters:
    """Where records that do not decode go: the dead-letter topic, with their error and where
    they came from in the headers."""

    def __init__(self, producer: AsyncProducer, topic: str, sent: Counter) -> None:
        self.producer = producer
        self.topic = topic
        #: Counts the records dead-lettered (the consumer's own metric, which alerts watch).
        self.sent = sent

    def record(self, message: Message, error: str) -> Record:
        logger.error(
            "undecodable record %s[%s]@%s goes to %s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            self.topic,
            error,
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.error", error.encode()),
            ("dlq.topic", (message.topic() or "").encode()),
            ("dlq.partition", str(message.partition()).encode()),
            ("dlq.offset", str(message.offset()).encode()),
        ]
        return Record(self.topic, message.key(), message.value() or b"", -1, headers)


class ConsumerLoop(abc.ABC):
    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        group: str,
        *,
        batch: int,
        poll_seconds: float,
        commit_seconds: float,
        fill: bool = False,
        dead_letters: DeadLetters | None = None,
        failures: Counter | None = None,
        renew: Callable[[], Consumer] | None = None,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self._group = group
        self._lag = LagReporter(consumer, group)
        #: Makes a consumer like the first, to replace one that failed for good.
        self._renew = renew
        self._batch = batch
        self._poll_seconds = poll_seconds
        #: 0: commit after every batch; else at most this often.
        self._commit_seconds = commit_seconds
        #: Wait up to ``poll_seconds`` for a whole batch (throughput: fewer, fuller batches)
        #: instead of taking what is there once the first record arrives (latency).
        self._fill = fill
        self._dead_letters = dead_letters
        #: Counts batches whose work failed and was done again.
        self._failures = failures
        self._dead: list[Record] = []
        #: Per partition, the offset after the last record handled since it was assigned.
        self._handled_to: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._committed_at = 0.0
        #: The loop's last turn (readiness: a loop stuck elsewhere is down).
        self.polled_at = time.monotonic()
        #: Why the last batch failed, until one succeeds.
        self.last_error: str | None = None
        self.batches = 0
        #: Since when the group has given this consumer nothing back after it lost its
        #: partitions (or since it was replaced); None once it is assigned again.
        self._unassigned_since: float | None = None

    # What each consumer says.

    async def start(self) -> None:
        """Before the first poll: join the consumer group (a consumer that assigns its
        partitions by hand overrides this)."""
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    async def ready(self, stop: asyncio.Event) -> bool:
        """Whether to poll now (False: the loop turns again, after ``tick``)."""
        return True

    @abc.abstractmethod
    async def handle(self, records: list[Message]) -> None:
        """The work on a batch (consumer errors already dropped); an exception has the batch
        handled again after a pause."""

    @abc.abstractmethod
    def committable(self) -> dict[int, int]:
        """Per partition, the offset of the next record whose work is not done yet."""

    async def tick(self) -> None:  # noqa: B027 - a hook: most consumers need none
        """After every turn of the loop."""

    async def stopping(self) -> None:  # noqa: B027 - a hook: most consumers need none
        """When the loop stops, before its last commit (work in flight may finish here)."""

    def revoked(self, partitions: set[int]) -> None:  # noqa: B027 - a hook: most need none
        """The group took these partitions away (or they were lost). Called inside a poll,
        on its thread: record it and act on it in the loop."""

    def replaced(self) -> None:  # noqa: B027 - a hook: most consumers need none
        """The consumer failed for good and a new one took its place, holding no partition
        yet: what was kept per partition is no longer this consumer's to finish."""

    # What the loop gives them.

    def decode(self, message: Message) -> deliveries.Delivery | None:
        """The delivery a record carries, or None if it does not decode: then it goes to the
        dead letters (durable before the batch is committed) or, without those, is logged."""
        try:
            return deliveries.decode(message.value())
        except deliveries.InvalidDelivery as exc:
            if self._dead_letters is not None:
                self._dead.append(self._dead_letters.record(message, str(exc)))
            else:
                logger.warning(
                    "skipping undecodable record at %s@%s: %s",
                    message.partition(),
                    message.offset(),
                    exc,
                )
            return None

    def commit(self, offsets: dict[int, int], *, asynchronous: bool) -> None:
        """Commit these positions (those already committed are left out). A failed commit is
        only logged: the work is durable and idempotent, a later commit covers it."""
        changed = [
            TopicPartition(self.topic, partition, offset)
            for partition, offset in sorted(offsets.items())
            if self._committed.get(partition) != offset
        ]
        self._committed_at = time.monotonic()
        if not changed:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=changed, asynchronous=True)
            else:
                self.consumer.commit(offsets=changed, asynchronous=False)
        except KafkaException as exc:
            logger.warning("committing offsets failed (a later commit covers them): %s", exc)
            return
        for position in changed:
            self._committed[position.partition] = position.offset

    def forget(self, partitions: set[int]) -> None:
        """Partitions given up: what was committed for them says nothing any more."""
        for partition in partitions:
            self._committed.pop(partition, None)
            self._handled_to.pop(partition, None)

    def check(self, task: asyncio.Task[Any], name: str) -> ops.Check:
        """Readiness: the loop runs and has turned within ``ops.STUCK_SECONDS``."""
        return ops.loop_check(task, name, lambda: self.polled_at, lambda: self.last_error)

    # The loop.

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            while not stop.is_set():
                if await self.ready(stop):
                    if self._fill:
                        records = await asyncio.to_thread(
                            self.consumer.consume, self._batch, self._poll_seconds
                        )
                    else:
                        records = await asyncio.to_thread(
                            fetch, self.consumer, self._batch, self._poll_seconds
                        )
                    self._lag.maybe_report()
                    # librdkafka hands a fatal error to the poller as an error of code _FATAL
                    # (whose own fatal() flag is not set).
                    fatal = next(
                        (
                            e
                            for r in records
                            if (e := r.error()) and (e.fatal() or e.code() == KafkaError._FATAL)
                        ),
                        None,
                    )
                    if fatal is not None:
                        await self._replace_consumer(f"the Kafka consumer failed for good: {fatal}")
                        continue
                    stranded = self.stranded_for()
                    if stranded > REJOIN_SECONDS and await self._brokers_answer():
                        await self._replace_consumer(
                            f"the consumer lost its partitions {stranded:.0f} s ago and the group"
                            " has given it none back though the brokers answer"
                        )
                        continue
                    records = [r for r in records if not failed(r, logger)]
                    if records and not await self._handled(records, stop):
                        return
                self.polled_at = time.monotonic()
                await self.tick()
                if time.monotonic() - self._committed_at >= self._commit_seconds:
                    self.commit(self.committable(), asynchronous=True)
        finally:
            await self.stopping()
            offsets = self.committable()
            if offsets:
                await asyncio.to_thread(self.commit, offsets, asynchronous=False)

    def switch_consumer(self, consumer: Consumer) -> None:
        """Poll ``consumer`` from now on, keeping the offsets handled and committed (a fan-out
        moving its partitions to its other consumer, which batches differently)."""
        self.consumer = consumer
        self._lag = LagReporter(consumer, self._group)

    def stranded_for(self, now: float | None = None) -> float:
        """Seconds since this consumer lost its partitions (or was replaced) without the
        group giving it any back; 0 while it is assigned."""
        since = self._unassigned_since
        return 0.0 if since is None else (time.monotonic() if now is None else now) - since

    async def _brokers_answer(self) -> bool:
        """Whether the cluster answers this consumer now. While it does not (an outage), the
        wait for an assignment starts again: replacing a consumer then would not help."""
        try:
            await asyncio.to_thread(self.consumer.list_topics, self.topic, 5.0)
        except KafkaException:
            self._unassigned_since = time.monotonic()
            return False
        return True

    async def _replace_consumer(self, reason: str) -> None:
        """A consumer that failed for good (seen: a static group member fenced after the
        group's coordinator moved while two of three brokers were down), or that the group
        left without partitions for ``REJOIN_SECONDS``, may never deliver again: it is
        replaced by a new one that joins the group again and starts from the committed offsets
        (the work since is redone; it is idempotent). Without a way to make one, the loop ends,
        and readiness says so. The new one has ``REJOIN_SECONDS`` to be assigned in turn (a
        broker still down: it is replaced again then)."""
        self.last_error = reason
        logger.error("%s; %s", self.last_error, "replacing it" if self._renew else "stopping")
        if self._renew is None:
            raise RuntimeError(self.last_error)
        old, self.consumer = self.consumer, self._renew()
        with contextlib.suppress(KafkaException, RuntimeError):
            await asyncio.to_thread(old.close)
        self._lag = LagReporter(self.consumer, self._group)
        self._committed = {}
        self._handled_to = {}
        self._unassigned_since = time.monotonic()
        self.replaced()
        await self.start()
        self.last_error = None

    async def _handled(self, records: list[Message], stop: asyncio.Event) -> bool:
        """Handle the batch, again and again until it succeeds; False if the loop is to stop
        first."""
        while True:
            self._dead = []
            try:
                await self.handle(records)
                if self._dead and self._dead_letters is not None:
                    try:
                        await self._dead_letters.producer.send(self._dead)
                    except ProduceFailed as exc:
                        raise RuntimeError(f"dead-lettering failed: {exc}") from exc
                    self._dead_letters.sent.inc(len(self._dead))
            except Exception as exc:  # noqa: BLE001 - the batch is handled again, never lost
                if self._failures is not None:
                    self._failures.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("handling a batch failed, retrying: %s", self.last_error)
                if stop.is_set():
                    return False
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.last_error = None
            self.batches += 1
            self._follow_offsets(records)
            return True

    def _follow_offsets(self, records: list[Message]) -> None:
        """Note where each partition's records got to. The producers are idempotent and not
        transactional, so a partition's offsets have no holes: a record past the next one
        expected means the consumer skipped records, which no one would see otherwise. The
        first record after an assignment is logged, so a handover between two consumers can
        be followed in their logs."""
        handled = self._handled_to
        for message in records:
            partition, offset = message.partition() or 0, message.offset() or 0
            expected = handled.get(partition)
            if expected is None:
                logger.info(
                    "%s[%d]: first record handled at offset %d", self.topic, partition, offset
                )
            elif offset > expected:
                logger.error(
                    "%s[%d]: records %d..%d were skipped (the consumer jumped past them)",
                    self.topic,
                    partition,
                    expected,
                    offset - 1,
                )
            handled[partition] = offset + 1

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # On the poll's thread, between batches. A partition assigned anew starts wherever its
        # committed offset says, so what was noted for it before says nothing.
        for tp in partitions:
            self._handled_to.pop(tp.partition, None)
        self._unassigned_since = None
        logger.info(
            "%s: assigned partitions %s", self.topic, sorted(tp.partition for tp in partitions)
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        logger.info(
            "%s: partitions revoked, handled up to %s",
            self.topic,
            {p: self._handled_to.get(p) for p in sorted(gone)},
        )
        self.revoked(gone)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.warning("%s: partitions lost (the group went on without this consumer)", self.topic)
        self._unassigned_since = time.monotonic()
        self._on_revoke(consumer, partitions)
