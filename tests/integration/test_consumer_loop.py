"""The contract of the one Kafka read loop (``chatlib/consumer_loop.py``) that the history
writer, the fan-out and the notifier are built on, against real Kafka: every record is handled,
a batch whose work fails is handled again (never skipped), what does not decode is
dead-lettered with its error before anything is committed, and only what the consumer says is
done is committed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from chatlib import deliveries
from chatlib.consumer_loop import ConsumerLoop, DeadLetters
from chatlib.kafka import AsyncProducer, Record, ensure_topic, fetch, reader
from chatlib.settings import KafkaAccess
from tests.integration.conftest import Endpoints

PARTITIONS = 2
GOOD = 20


class Recorder(ConsumerLoop):
    """Decodes what it reads and keeps the message ids; its first ``failures`` batches fail."""

    def __init__(self, consumer: Consumer, topic: str, dead: DeadLetters, failures: int) -> None:
        super().__init__(
            consumer, topic, "contract", batch=7, poll_seconds=0.2, commit_seconds=0,
            dead_letters=dead,
        )  # fmt: skip
        self.failures = failures
        self.handled: list[int] = []
        self.errors_seen: list[str | None] = []
        self.all_handled = asyncio.Event()
        self._done: dict[int, int] = {}

    async def handle(self, records: list[Message]) -> None:
        self.errors_seen.append(self.last_error)
        found = [d for d in (self.decode(r) for r in records) if d is not None]
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store is away")
        self.handled += [d.message_id for d in found]
        if len(self.handled) >= GOOD:
            self.all_handled.set()
        for record in records:
            partition, offset = record.partition() or 0, record.offset() or 0
            self._done[partition] = max(self._done.get(partition, 0), offset + 1)

    def committable(self) -> dict[int, int]:
        return dict(self._done)


@pytest.mark.timeout(120)
async def test_every_record_is_handled_once_done_and_bad_ones_are_dead_lettered(
    endpoints: Endpoints, unique: str
) -> None:
    topic, dead_topic = f"{unique}.deliveries", f"{unique}.dlq"
    for name, count in ((topic, PARTITIONS), (dead_topic, 1)):
        await asyncio.to_thread(ensure_topic, endpoints.kafka, name, count, 1, {})
    producer = AsyncProducer(endpoints.kafka.config())
    entry = deliveries.Delivery(chat_id="d:1:2", kind="direct", sender_id=1, body="hi")
    records = [
        Record(topic, c.key, c.value, n % PARTITIONS)
        for n in range(GOOD)
        for c in deliveries.encode(entry, 1000 + n, [2])
    ]
    records.insert(5, Record(topic, b"2", b"\xff not a delivery", 1))
    await producer.send(records)
    group = f"{unique}-group"
    consumer = Consumer(
        {
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metrics = CollectorRegistry()
    sent = Counter("dead", "dead letters", registry=metrics)
    loop = Recorder(consumer, topic, DeadLetters(producer, dead_topic, sent), failures=2)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    check = loop.check(task, "contract loop")
    try:
        await asyncio.wait_for(loop.all_handled.wait(), 60)
        assert await check() is None
    finally:
        stop.set()
        await task
    # Each good record once (a failed batch is handled again as a whole, never in part).
    assert sorted(loop.handled) == [1000 + n for n in range(GOOD)]
    # The failures were seen, then cleared by a batch that succeeded.
    assert loop.errors_seen[1:3] == ["RuntimeError: the store is away"] * 2
    assert loop.last_error is None
    # The bad record is dead-lettered once, with its error and origin.
    dead = await asyncio.to_thread(_read_all, endpoints.kafka, dead_topic)
    assert [m.value() for m in dead] == [b"\xff not a delivery"]
    headers = dict(dead[0].headers() or [])
    assert headers["dlq.topic"] == topic.encode()
    assert "not a Delivery" in str(headers["dlq.error"])
    assert metrics.get_sample_value("dead_total") == 1
    # Committed: exactly to the end of each partition.
    committed = consumer.committed(
        [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
    )
    assert {c.partition: c.offset for c in committed} == {0: GOOD // 2, 1: GOOD // 2 + 1}
    consumer.close()
    producer.close()


def _read_all(kafka: KafkaAccess, topic: str) -> list[Message]:
    """Every record of the topic's one partition, read to its end."""
    consumer = reader(kafka, f"check-{uuid.uuid4().hex}")
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[Message] = []
    try:
        for _ in range(100):
            for message in fetch(consumer, 100, 0.2):
                error = message.error()
                if error is None:
                    found.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    return found
        raise AssertionError(f"{topic} was not read to its end")
    finally:
        consumer.close()


class Counting(ConsumerLoop):
    """Keeps every message id it handles; counts the consumers replaced under it."""

    def __init__(self, make: Callable[[], Consumer], topic: str, group: str) -> None:
        super().__init__(
            make(), topic, group, batch=50, poll_seconds=0.2, commit_seconds=0, renew=make
        )
        self.handled: set[int] = set()
        self.replacements = 0
        self._done: dict[int, int] = {}

    async def handle(self, records: list[Message]) -> None:
        for record in records:
            delivery = self.decode(record)
            if delivery is not None:
                self.handled.add(delivery.message_id)
            partition, offset = record.partition() or 0, record.offset() or 0
            self._done[partition] = max(self._done.get(partition, 0), offset + 1)

    def committable(self) -> dict[int, int]:
        return dict(self._done)

    def replaced(self) -> None:
        self.replacements += 1
        self._done = {}


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_a_consumer_fenced_for_good_is_replaced_and_reading_goes_on(
    endpoints: Endpoints, unique: str
) -> None:
    """A static member fenced by another with its instance id fails for good (librdkafka's
    fatal error, as the history writer met when two of three brokers died): the loop makes a
    new consumer, which joins again and reads on from the committed offsets."""
    topic = f"{unique}.deliveries"
    await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, PARTITIONS, 1, {})
    group = f"{unique}-group"

    def make() -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": endpoints.kafka_bootstrap,
                "group.id": group,
                "group.instance.id": "static-1",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )

    producer = AsyncProducer(endpoints.kafka.config())
    entry = deliveries.Delivery(chat_id="d:1:2", kind="direct", sender_id=1, body="hi")

    async def send(ids: range) -> None:
        await producer.send(
            [
                Record(topic, c.key, c.value, n % PARTITIONS)
                for n in ids
                for c in deliveries.encode(entry, n, [2])
            ]
        )

    loop = Counting(make, topic, group)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    intruder = make()
    try:
        await send(range(1, 11))
        await _until(lambda: loop.handled >= set(range(1, 11)), 60)
        # Another member with the same instance id takes its place in the group.
        intruder.subscribe([topic])
        await _until(lambda: bool(fetch(intruder, 10, 0.5)) or loop.replacements > 0, 60)
        await _until(lambda: loop.replacements > 0, 60)
        await asyncio.to_thread(intruder.close)
        await send(range(11, 21))
        await _until(lambda: loop.handled >= set(range(1, 21)), 60)
        assert not task.done()
        assert loop.last_error is None
    finally:
        stop.set()
        await task
        loop.consumer.close()
        producer.close()
    assert loop.replacements == 1
