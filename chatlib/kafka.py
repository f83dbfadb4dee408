"""confluent-kafka adapted to asyncio: a batch of records is acknowledged as one future.

confluent-kafka's own asyncio producer does not carry headers, and trace context travels in
headers, so this wraps the synchronous Producer. A background thread serves delivery callbacks;
each callback only counts its batch down, and every batch completed during one poll is handed
to the event loop in one call, so a message's copies cost no future, task or cross-thread hop
each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

# Re-exported by confluent_kafka.admin at run time; the stubs declare it in cimpl only.
from confluent_kafka.cimpl import NewPartitions, NewTopic
from prometheus_client import Gauge

from chatlib.pace import Pace
from chatlib.settings import KafkaAccess

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]

#: Records the producer may hold (queued or in flight) before a new batch is refused. A batch is
#: enqueued whole or not at all, so the library's own larger limit is never reached halfway.
MAX_QUEUED = 100_000
#: A record Kafka has not acknowledged this long after it was produced fails (and is never sent
#: after that): what bounds how long an attempt whose process died may still land copies.
DELIVERY_TIMEOUT_MS = 20_000
#: See AsyncProducer.
REQUEST_TIMEOUT_MS = 5_000


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    partition: int
    headers: Headers | None = None


@dataclass(frozen=True)
class Produced:
    partition: int
    offset: int


class ProduceFailed(Exception):
    """Kafka did not acknowledge a record (after the producer's own retries).

    ``uncertain`` is False only when no record of the batch can have been written; otherwise
    some may have been (a record that timed out in flight, say), and the caller must find out
    before writing them again.
    """

    def __init__(self, message: str, *, uncertain: bool) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class _Batch:
    """Counts a batch's delivery reports down (under the producer's lock)."""

    __slots__ = ("errors", "future", "offsets", "remaining")

    def __init__(self, future: asyncio.Future[list[Produced]], size: int) -> None:
        self.future = future
        self.remaining = size
        self.errors: list[KafkaError] = []
        self.offsets: list[Produced] = []


LAG = Gauge(
    "chat_consumer_lag",
    "Records behind the log's end, by consumer group and partition",
    ["group", "partition"],
)
LAG_EVERY_SECONDS = 5.0


class LagReporter:
    """Sets ``chat_consumer_lag`` for what a consumer is assigned, every few seconds.

    The log's end comes from the consumer's own cache (updated by every fetch), so reporting
    costs no round trip to the broker; a partition the consumer gave up is no longer
    reported."""

    def __init__(self, consumer: Consumer, group: str) -> None:
        self._consumer = consumer
        self._group = group
        self._at = 0.0
        self._reported: set[int] = set()

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._at < LAG_EVERY_SECONDS:
            return
        self._at = now
        try:
            positions = self._consumer.position(self._consumer.assignment())
        except KafkaException:
            return
        seen = set()
        for position in positions:
            _, high = self._consumer.get_watermark_offsets(position, cached=True)
            if high < 0 or position.offset < 0:
                continue
            seen.add(position.partition)
            LAG.labels(group=self._group, partition=str(position.partition)).set(
                max(0, high - position.offset)
            )
        for gone in self._reported - seen:
            LAG.remove(self._group, str(gone))
        self._reported = seen


class AsyncProducer:
    """An idempotent producer whose sends resolve on the event loop. Given a ``pace``, it
    keeps a twin that does not linger (``linger.ms`` 0) and sends through it while the pace
    says traffic is quiet (``chatlib/pace.py``): all the records of one send go through one of
    them, so each send is in order as before, and a send acknowledged before another starts
    is before it in every partition, whichever producer each used."""

    def __init__(
        self, config: dict[str, Any], *, max_queued: int = MAX_QUEUED, pace: Pace | None = None
    ) -> None:
        settings = {
            # Never lose or duplicate on retry: all in-sync replicas ack, and the broker dedups
            # the producer's own retries.
            "enable.idempotence": True,
            "acks": "all",
            # Fewer, larger produce requests: the broker's cost is per request more than per
            # record, and 5 ms is small beside the rest of a message's path.
            "linger.ms": 5,
            # A record Kafka has not taken within this fails instead of waiting the default
            # five minutes: the send path settles it (finds what landed, produces the rest)
            # and the client, answered UNAVAILABLE long before, retries with the same key.
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            # A produce request a frozen leader never answers is sent again (to the new
            # leader, once one is elected) after this long; the idempotent producer's sequence
            # numbers make the repeat harmless.
            "request.timeout.ms": REQUEST_TIMEOUT_MS,
            "queue.buffering.max.messages": max_queued * 2,
            **config,
        }
        self._max_queued = max_queued
        self._producer = Producer(settings)
        self._pace = pace
        #: The twin that does not linger, used while traffic is quiet.
        self._quick = Producer({**settings, "linger.ms": 0}) if pace is not None else None
        self._producers = [p for p in (self._producer, self._quick) if p is not None]
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Batches completed during the current poll; flushed to the loop after it.
        self._done: list[_Batch] = []
        #: Guards batch counts: delivery reports run on the poller threads, a batch that could
        #: only be enqueued in part is settled from the event loop's.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # A poller per producer: one polling the other would hold its reports back.
        self._pollers = [
            threading.Thread(target=self._poll, args=(p,), name="kafka-producer", daemon=True)
            for p in self._producers
        ]
        for poller in self._pollers:
            poller.start()

    def _poll(self, producer: Producer) -> None:
        while not self._stop.is_set():
            producer.poll(0.05)
            if self._done:
                with self._lock:
                    done, self._done = self._done, []
                loop = self._loop
                if loop is not None and not loop.is_closed() and done:
                    loop.call_soon_threadsafe(_settle_all, done)

    async def check(self) -> str | None:
        """Readiness: a broker answers a metadata request within two seconds."""
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=2.0)
        except KafkaException as exc:
            return f"Kafka does not answer: {exc.args[0] if exc.args else exc}"
        return None

    def queued(self) -> int:
        """Records queued or in flight."""
        return sum(len(p) for p in self._producers)

    def send(self, records: Sequence[Record]) -> asyncio.Future[list[Produced]]:
        """Enqueue every record now (or none, raising ProduceFailed); the future resolves
        once Kafka acknowledged all of them, or fails with ProduceFailed."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[list[Produced]] = loop.create_future()
        if not records:
            future.set_result([])
            return future
        queued = self.queued()
        if queued + len(records) > self._max_queued:
            raise ProduceFailed(f"{queued} records are waiting for Kafka already", uncertain=False)
        batch = _Batch(future, len(records))
        # (A producer's truth is its queue's length: compared with None, never tested.)
        pace, quick = self._pace, self._quick
        use_quick = pace is not None and quick is not None and pace.note(len(records))

        lock = self._lock

        def report(error: KafkaError | None, message: Message) -> None:
            with lock:
                if error is not None:
                    batch.errors.append(error)
                else:
                    batch.offsets.append(Produced(message.partition() or 0, message.offset() or 0))
                batch.remaining -= 1
                if batch.remaining == 0:
                    self._done.append(batch)

        produce = (quick if use_quick and quick is not None else self._producer).produce
        enqueued = 0
        try:
            for record in records:
                produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    partition=record.partition,
                    headers=record.headers,
                    on_delivery=report,
                )
                enqueued += 1
        except (BufferError, KafkaException) as exc:
            if enqueued == 0:
                raise ProduceFailed(f"{records[0].topic}: {exc}", uncertain=False) from exc
            # Part of the batch is on its way: it stays, and the caller must treat the whole
            # batch as possibly written.
            with lock:
                batch.errors.append(KafkaError(KafkaError._FAIL, str(exc)))
                batch.remaining -= len(records) - enqueued
                if batch.remaining == 0:
                    self._done.append(batch)
        return future

    async def produce(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int = -1,
        headers: Headers | None = None,
    ) -> Produced:
        """Produce one record and wait for its acknowledgement."""
        [produced] = await self.send([Record(topic, key, value, partition, headers)])
        return produced

    def purge_queued(self) -> None:
        """Drop what has not been sent yet (their batches fail as certainly not written)."""
        for producer in self._producers:
            producer.purge(in_queue=True, in_flight=False, blocking=False)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for poller in self._pollers:
            poller.join()
        for producer in self._producers:
            producer.flush(timeout)


def _settle_all(batches: list[_Batch]) -> None:
    for batch in batches:
        if batch.future.done():
            continue
        if not batch.errors:
            batch.future.set_result(batch.offsets)
            continue
        purged = all(e.code() == KafkaError._PURGE_QUEUE for e in batch.errors)
        written_some = bool(batch.offsets)
        batch.future.set_exception(
            ProduceFailed(
                "; ".join(sorted({e.str() for e in batch.errors})),
                uncertain=written_some or not purged,
            )
        )


def failed(message: Message, log: logging.Logger) -> bool:
    """True if a consumed message is an error rather than a record; the error is logged unless
    it only says a partition's end was reached."""
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", error)
    return True


def reader(kafka: KafkaAccess, purpose: str) -> Consumer:
    """A consumer that reads assigned partitions by offset and never commits (its group id only
    satisfies the client; it starts with ``purpose``); partition ends are reported, so a read
    knows when it is done."""
    return Consumer(
        kafka.config(
            **{
                "group.id": f"{purpose}-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )


class Reader:
    """A :func:`reader` made on first use, and made anew after a failure. A client whose view
    of the cluster went stale while brokers were away (seen: "Unknown partition" for minutes
    after two of three brokers came back) can keep failing until it is replaced. Blocking,
    and one call at a time."""

    def __init__(self, kafka: KafkaAccess, purpose: str) -> None:
        self._kafka = kafka
        self._purpose = purpose
        self._consumer: Consumer | None = None

    def get(self) -> Consumer:
        if self._consumer is None:
            self._consumer = reader(self._kafka, self._purpose)
        return self._consumer

    def discard(self) -> None:
        """Drop the consumer after a failure; the next :meth:`get` makes a new one."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    def close(self) -> None:
        self.discard()


def fetch(consumer: Consumer, limit: int, wait: float) -> list[Message]:
    """Wait up to ``wait`` seconds for the first record, then take what else is already there.

    ``consumer.consume(limit, wait)`` alone returns only when ``limit`` records arrived or
    ``wait`` passed, which adds up to the whole wait to every record when traffic is light.
    Blocking: call it from a thread.
    """
    first = consumer.poll(wait)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, 0)]


def ensure_topic(
    kafka: KafkaAccess, name: str, partitions: int, replication: int, config: dict[str, str]
) -> bool:
    """Create ``name`` if it does not exist, else give it ``config``; True if it was
    created."""
    admin = AdminClient(kafka.config())
    existing = admin.list_topics(timeout=10).topics
    if name in existing:
        found = len(existing[name].partitions)
        if found < partitions:
            raise KafkaException(
                f"topic {name} has {found} partitions, configured {partitions}: partitions are "
                "routing (stable_hash(user) % P) and are added only by chat-admin grow"
            )
        entries = [
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in config.items()
        ]
        if entries:
            resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
            for future in admin.incremental_alter_configs([resource]).values():
                future.result(timeout=30)
        return False
    topic = NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config)
    for future in admin.create_topics([topic]).values():
        future.result(timeout=30)
    return True


def add_partitions(kafka: KafkaAccess, name: str, total: int) -> int:
    """Give topic ``name`` ``total`` partitions, if it has fewer; the count it had."""
    admin = AdminClient(kafka.config())
    found = len(admin.list_topics(name, timeout=10).topics[name].partitions)
    if found < total:
        for future in admin.create_partitions([NewPartitions(name, total)]).values():
            future.result(timeout=30)
    return found


def end_offsets(kafka: KafkaAccess, name: str, partitions: int) -> list[int]:
    """The end (high watermark) of each of the first ``partitions`` partitions of ``name``."""
    reader = Consumer(kafka.config(**{"group.id": f"ends-{uuid.uuid4().hex}"}))
    try:
        return [
            int(reader.get_watermark_offsets(TopicPartition(name, p), 10.0, False)[1])
            for p in range(partitions)
        ]
    finally:
        reader.close()


#: Records per batch of ``read_all``.
READ_ALL_BATCH = 1000


async def read_all(
    kafka: KafkaAccess, topic: str, handle: Callable[[list[Message]], Awaitable[None]]
) -> None:
    """Every record of ``topic`` from its start to its end as of now, in batches handed to
    ``handle`` (a keyspace rebuilt from the log reads its topics so)."""
    consumer: Consumer = reader(kafka, "rebuild")
    try:
        metadata = await asyncio.to_thread(consumer.list_topics, topic, 10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in partitions:
            low, high = await asyncio.to_thread(
                consumer.get_watermark_offsets, TopicPartition(topic, partition), 10.0, False
            )
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not starts:
            return
        consumer.assign(starts)
        while ends:
            messages = await asyncio.to_thread(fetch, consumer, READ_ALL_BATCH, 1.0)
            records = []
            for message in messages:
                error = message.error()
                partition = message.partition() or 0
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {error}")
                    ends.pop(partition, None)  # read to its end (compaction leaves gaps)
                    continue
                end = ends.get(partition)
                if end is None or (message.offset() or 0) >= end:
                    continue
                records.append(message)
                if (message.offset() or 0) + 1 >= end:
                    del ends[partition]
            if records:
                await handle(records)
    finally:
        consumer.close()
