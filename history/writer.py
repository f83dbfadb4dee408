"""History writers: consume deliveries, persist to Cassandra, then commit the offsets.

Auto-commit is off; a batch's offsets are committed only after every Cassandra write of the
batch was acknowledged, so a crash replays at most the uncommitted batch, and the writes are
idempotent (upserts by message id; chat state skips offsets already applied). A record that
cannot be decoded goes to the dead-letter topic with its error, and is then committed: it never
stops the consumer and is never silently skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from google.protobuf.message import DecodeError
from opentelemetry import trace
from prometheus_client import Counter

from chatlib.kafka import AsyncProducer
from chatlib.telemetry import context_from_headers
from history.store import HistoryStore
from protos.chat.v1 import envelope_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

BATCH = 500
POLL_SECONDS = 0.5
WRITTEN = Counter("history_messages_written_total", "Primary copies written to messages_by_chat")
STATES = Counter("history_chat_states_applied_total", "Deliveries folded into chats_by_user")
DEAD = Counter("history_dead_letters_total", "Records sent to the dead-letter topic")


@dataclass(frozen=True)
class Decoded:
    message: Message
    delivery: envelope_pb2.Delivery


class HistoryWriter:
    def __init__(
        self,
        consumer: Consumer,
        store: HistoryStore,
        dead_letters: AsyncProducer,
        *,
        topic: str,
        dead_letter_topic: str,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._dead_letters = dead_letters
        self._topic = topic
        self._dead_letter_topic = dead_letter_topic
        self.batches = 0
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([self._topic])
        while not stop.is_set():
            # consume() fills batches (up to POLL_SECONDS of waiting): persistence is about
            # throughput, unlike the live fan-out, which uses chatlib.kafka.fetch.
            messages = await asyncio.to_thread(self._consumer.consume, BATCH, POLL_SECONDS)
            if not messages:
                continue
            await self.handle(messages)
            self.batches += 1

    async def handle(self, messages: list[Message]) -> None:
        """Persist one batch durably, then commit its offsets."""
        decoded: list[Decoded] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error: %s", error)
                continue
            try:
                delivery = envelope_pb2.Delivery.FromString(message.value() or b"")
                _check(delivery)
            except (DecodeError, ValueError) as exc:
                await self._dead_letter(message, f"{type(exc).__name__}: {exc}")
                continue
            decoded.append(Decoded(message, delivery))
        await self._persist(decoded)
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic() or "", message.partition() or 0)
                offsets[key] = max(offsets.get(key, -1), (message.offset() or 0) + 1)
        if offsets:
            commit = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            await asyncio.to_thread(self._consumer.commit, offsets=commit, asynchronous=False)

    async def _persist(self, batch: list[Decoded]) -> None:
        # Messages first (primary copies), in parallel: each is an independent upsert.
        async def write(item: Decoded) -> None:
            parent = context_from_headers(item.message.headers())  # type: ignore[arg-type]
            with tracer.start_as_current_span(
                "history.write_message",
                context=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": self._topic,
                    "messaging.kafka.offset": item.message.offset() or 0,
                    "db.system": "cassandra",
                    "chat.message_id": str(item.delivery.message_id),
                },
            ):
                await self._store.write_message(item.delivery)
            WRITTEN.inc()

        await asyncio.gather(*(write(item) for item in batch if item.delivery.primary))

        # Chat state: sequential per (recipient, chat), parallel across them.
        per_key: dict[tuple[int, str], list[Decoded]] = defaultdict(list)
        for item in batch:
            per_key[(item.delivery.recipient_id, item.delivery.chat_id)].append(item)

        async def fold(items: list[Decoded]) -> None:
            for item in items:
                applied = await self._store.apply_chat_state(
                    item.delivery, item.message.partition() or 0, item.message.offset() or 0
                )
                if applied:
                    STATES.inc()

        await asyncio.gather(*(fold(items) for items in per_key.values()))

    async def _dead_letter(self, message: Message, error: str) -> None:
        logger.error(
            "undecodable record %s[%s]@%s sent to %s: %s",
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
        await self._dead_letters.produce(
            self._dead_letter_topic, message.value() or b"", key=message.key(), headers=headers
        )
        DEAD.inc()


def _check(delivery: envelope_pb2.Delivery) -> None:
    if not delivery.message_id or not delivery.chat_id or not delivery.recipient_id:
        raise ValueError("delivery lacks message_id, chat_id or recipient_id")
