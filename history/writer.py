"""History writers: consume deliveries, persist to Cassandra, then commit the offsets.

Auto-commit is off; a batch's offsets are committed (asynchronously) only after every
Cassandra write of the batch was acknowledged, so a crash or a lost commit replays at most a
few batches, and every write is idempotent (``history/store.py``). A record that cannot be
decoded goes to the dead-letter topic with its error: it never stops the consumer and is never
silently skipped. A batch whose writes fail is written again after a pause, never skipped; a
failed commit is only logged (the next one covers it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from opentelemetry import trace
from prometheus_client import Counter

from chatlib import deliveries
from chatlib.kafka import AsyncProducer, LagReporter, ProduceFailed, Record, failed
from chatlib.telemetry import sampled_context
from history.store import HistoryStore

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

BATCH = 5000
POLL_SECONDS = 0.25
RETRY_SECONDS = 1.0
WRITTEN = Counter("history_messages_written_total", "Primary copies written to messages_by_chat")
STATES = Counter("history_chat_states_applied_total", "Deliveries folded into chats_by_user")
DEAD = Counter("history_dead_letters_total", "Records sent to the dead-letter topic")
FAILED = Counter("history_batch_failures_total", "Batches whose writes failed and were retried")


class HistoryWriter:
    def __init__(
        self,
        consumer: Consumer,
        store: HistoryStore,
        dead_letters: AsyncProducer,
        *,
        topic: str,
        dead_letter_topic: str,
        group: str = "history-writers",
    ) -> None:
        self._consumer = consumer
        self._lag = LagReporter(consumer, group)
        #: When the loop last polled Kafka (readiness: a loop stuck elsewhere is down).
        self.polled_at = time.monotonic()
        self._store = store
        self._dead_letters = dead_letters
        self._topic = topic
        self._dead_letter_topic = dead_letter_topic
        self.batches = 0
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic])
        while not stop.is_set():
            messages = await asyncio.to_thread(self._consumer.consume, BATCH, POLL_SECONDS)
            self.polled_at = time.monotonic()
            self._lag.maybe_report()
            if not messages:
                continue
            while True:
                try:
                    await self.handle(messages)
                    break
                except Exception as exc:  # noqa: BLE001 - the batch is written again, never lost
                    FAILED.inc()
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    logger.warning("writing a batch failed, retrying: %s", self.last_error)
                    if stop.is_set():
                        return
                    await asyncio.sleep(RETRY_SECONDS)
            self.last_error = None
            self.batches += 1

    async def handle(self, messages: list[Message]) -> None:
        """Persist one batch durably, then commit its offsets."""
        decoded: list[deliveries.Delivery] = []
        dead: list[Record] = []
        spans: list[Any] = []
        offsets: dict[int, int] = {}
        for message in messages:
            if failed(message, logger):
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            offsets[partition] = max(offsets.get(partition, -1), offset + 1)
            try:
                delivery = deliveries.decode(message.value())
            except deliveries.InvalidDelivery as exc:
                dead.append(self._dead_letter(message, str(exc)))
                continue
            decoded.append(delivery)
            if delivery.primary:
                parent = sampled_context(message.headers())  # type: ignore[arg-type]
                if parent is not None:
                    spans.append(self._span(parent, partition, offset, delivery.message_id))
        if dead:
            try:
                await self._dead_letters.send(dead)
            except ProduceFailed as exc:
                raise RuntimeError(f"dead-lettering failed: {exc}") from exc
            DEAD.inc(len(dead))
        try:
            await self._store.persist(decoded)
        finally:
            for span in spans:
                span.end()
        WRITTEN.inc(sum(1 for d in decoded if d.primary))
        STATES.inc(len(decoded))
        if offsets:
            commit = [TopicPartition(self._topic, p, o) for p, o in offsets.items()]
            try:
                self._consumer.commit(offsets=commit, asynchronous=True)
            except KafkaException as exc:
                # Not fatal: the writes are durable and idempotent; a later commit covers them.
                logger.warning("committing offsets failed: %s", exc)

    def _span(self, parent: Any, partition: int, offset: int, message_id: int) -> Any:
        return tracer.start_span(
            "history.write_message",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self._topic,
                "messaging.kafka.partition": partition,
                "messaging.kafka.offset": offset,
                "db.system": "cassandra",
                "chat.message_id": str(message_id),
            },
        )

    def _dead_letter(self, message: Message, error: str) -> Record:
        """The dead-letter record of ``message``: its bytes, with the error in the headers."""
        logger.error(
            "undecodable record %s[%s]@%s goes to %s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            self._dead_letter_topic,
            error,
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.error", error.encode()),
            ("dlq.topic", (message.topic() or "").encode()),
            ("dlq.partition", str(message.partition()).encode()),
            ("dlq.offset", str(message.offset()).encode()),
        ]
        return Record(self._dead_letter_topic, message.key(), message.value() or b"", -1, headers)
