"""History writers: consume deliveries, persist to Cassandra, then commit the offsets.

A ``ConsumerLoop`` (``chatlib/consumer_loop.py``): auto-commit is off, and a batch's offsets are
committed (asynchronously) only after every Cassandra write of the batch was acknowledged, so
a crash or a lost commit replays at most a few batches, and every write is idempotent
(``history/store.py``). A record that cannot be decoded goes to the dead-letter topic with its
error: it never stops the consumer and is never silently skipped. A batch whose writes fail is
written again after a pause, never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message
from opentelemetry import trace
from prometheus_client import Counter

from chatlib import deliveries
from chatlib.consumer_loop import ConsumerLoop, DeadLetters
from chatlib.kafka import AsyncProducer
from chatlib.telemetry import sampled_context
from history.store import HistoryStore

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

BATCH = 5000
POLL_SECONDS = 0.25
WRITTEN = Counter("history_messages_written_total", "Primary copies written to messages_by_chat")
STATES = Counter("history_chat_states_applied_total", "Deliveries folded into chats_by_user")
DEAD = Counter("history_dead_letters_total", "Records sent to the dead-letter topic")
FAILED = Counter("history_batch_failures_total", "Batches whose writes failed and were retried")


class HistoryWriter(ConsumerLoop):
    def __init__(
        self,
        consumer: Consumer,
        store: HistoryStore,
        dead_letters: AsyncProducer,
        *,
        topic: str,
        dead_letter_topic: str,
        group: str = "history-writers",
        renew: Callable[[], Consumer] | None = None,
    ) -> None:
        super().__init__(
            consumer,
            topic,
            group,
            batch=BATCH,
            poll_seconds=POLL_SECONDS,
            commit_seconds=0,  # after every batch: what it wrote is durable
            fill=True,  # fewer, fuller batches: fewer Cassandra round trips
            dead_letters=DeadLetters(dead_letters, dead_letter_topic, DEAD),
            failures=FAILED,
            renew=renew,
        )
        self._store = store
        self._done: dict[int, int] = {}

    async def handle(self, records: list[Message]) -> None:
        """Persist one batch durably (the loop commits it then)."""
        decoded: list[deliveries.Delivery] = []
        spans: list[Any] = []
        done: dict[int, int] = {}
        for message in records:
            partition, offset = message.partition() or 0, message.offset() or 0
            done[partition] = max(done.get(partition, -1), offset + 1)
            delivery = self.decode(message)
            if delivery is None:
                continue
            decoded.append(delivery)
            if delivery.primary:
                parent = sampled_context(message.headers())  # type: ignore[arg-type]
                if parent is not None:
                    spans.append(self._span(parent, partition, offset, delivery.message_id))
        try:
            await self._store.persist(decoded)
        finally:
            for span in spans:
                span.end()
        WRITTEN.inc(sum(1 for d in decoded if d.primary))
        STATES.inc(len(decoded))
        self._done = done

    def committable(self) -> dict[int, int]:
        """The offsets of the batch written last (the ones before it are committed)."""
        return self._done

    def _span(self, parent: Any, partition: int, offset: int, message_id: int) -> Any:
        return tracer.start_span(
            "history.write_message",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self.topic,
                "messaging.kafka.partition": partition,
                "messaging.kafka.offset": offset,
                "db.system": "cassandra",
                "chat.message_id": str(message_id),
            },
        )
