"""The send path: check, mint an id once per client message, produce one copy per member.

Idempotency: ``chat:dedup:<sender>:<client_message_id>`` in Redis holds the message id and
whether Kafka acknowledged every copy. A retry after an acknowledged send returns the same id
and produces nothing. A retry after a send that never finished produces the same records again
(same message id); everything downstream dedups by message id, so nothing appears twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from chatlib.config_sections import Features, Limits
from chatlib.errors import InvalidArgument, Unavailable
from chatlib.hashing import partition_for
from chatlib.ids import Snowflake
from chatlib.kafka import AsyncProducer, ProduceFailed
from chatlib.leases import LeaseLost
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from chatlib.telemetry import kafka_headers
from messaging.chats import ChatDirectory, check_chat_id
from messaging.rate_limit import RateLimiter
from protos.chat.v1 import envelope_pb2

tracer = trace.get_tracer(__name__)
SENT = Counter("messaging_messages_sent_total", "Messages acknowledged to senders", ["duplicate"])
SEND_SECONDS = Histogram("messaging_send_seconds", "Send latency until every copy is acked")

MAX_CLIENT_ID = 64


@dataclass(frozen=True)
class Accepted:
    message_id: int
    created_at_ms: int
    duplicate: bool


class Sender:
    def __init__(
        self,
        producer: AsyncProducer,
        redis: aioredis.Redis,
        directory: ChatDirectory,
        ids: Snowflake,
        rates: RateLimiter,
        *,
        limits: LiveSection[Limits],
        features: LiveSection[Features],
        partitioning: LiveSection[Partitioning],
        topic: str,
        dedup_ttl_seconds: int,
    ) -> None:
        self._producer = producer
        self._redis = redis
        self._directory = directory
        self._ids = ids
        self._rates = rates
        self._limits = limits
        self._features = features
        self._partitioning = partitioning
        self._topic = topic
        self._dedup_ttl = dedup_ttl_seconds

    def check(self, chat_id: str, client_message_id: str, body: str) -> None:
        check_chat_id(chat_id)
        if not client_message_id:
            raise InvalidArgument("client_message_id is required (it makes retries safe)")
        if len(client_message_id) > MAX_CLIENT_ID or not client_message_id.isprintable():
            raise InvalidArgument(
                f"client_message_id must be 1-{MAX_CLIENT_ID} printable characters"
            )
        if not body.strip():
            raise InvalidArgument("body is empty")
        size = len(body.encode("utf-8"))
        maximum = self._limits.get().max_body_bytes
        if size > maximum:
            raise InvalidArgument(f"body is {size} bytes, the maximum is {maximum}")

    async def send(self, sender: int, chat_id: str, client_message_id: str, body: str) -> Accepted:
        started = time.perf_counter()
        with tracer.start_as_current_span(
            "messaging.send", attributes={"chat.id": chat_id, "chat.sender_id": str(sender)}
        ) as span:
            self.check(chat_id, client_message_id, body)
            if not self._features.get().sending_enabled:
                raise Unavailable("sending is switched off for maintenance; retry later")
            members = await self._directory.check_member(chat_id, sender)
            limits = self._limits.get()
            await self._rates.take(sender, limits.send_rate_per_second, limits.send_burst)
            key = f"chat:dedup:{sender}:{client_message_id}"
            message_id, created_ms, acked = await self._claim(key)
            span.set_attribute("chat.message_id", str(message_id))
            if acked:
                SENT.labels(duplicate="true").inc()
                return Accepted(message_id, created_ms, duplicate=True)
            await self._produce(
                message_id, created_ms, sender, chat_id, client_message_id, body, members
            )
            try:
                await self._redis.set(
                    key, _record(message_id, created_ms, acked=True), ex=self._dedup_ttl, xx=True
                )
            except (aioredis.RedisError, OSError) as exc:
                # Kafka has every copy, but a retry would not know it: say "retry", and the
                # retry produces the same message id again (streams and history skip repeats).
                raise Unavailable(
                    f"message {message_id} was stored but not confirmed ({exc}); retry with"
                    " the same client_message_id"
                ) from None
        SEND_SECONDS.observe(time.perf_counter() - started)
        SENT.labels(duplicate="false").inc()
        return Accepted(message_id, created_ms, duplicate=False)

    async def _claim(self, key: str) -> tuple[int, int, bool]:
        """The message id for this client message: new, or the one a previous attempt took."""
        try:
            message_id = self._ids.next_id()
        except LeaseLost as exc:
            raise Unavailable(f"this server cannot assign message ids right now: {exc}") from None
        created_ms = int(time.time() * 1000)
        try:
            if await self._redis.set(
                key, _record(message_id, created_ms, acked=False), ex=self._dedup_ttl, nx=True
            ):
                return message_id, created_ms, False
            existing = await self._redis.get(key)
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"dedup store unavailable: {exc}") from None
        if existing is None:  # expired between the two calls: claim again
            return await self._claim(key)
        previous = json.loads(existing)
        return int(previous["id"]), int(previous["created"]), bool(previous["acked"])

    async def _produce(
        self,
        message_id: int,
        created_ms: int,
        sender: int,
        chat_id: str,
        client_message_id: str,
        body: str,
        members: frozenset[int],
    ) -> None:
        with tracer.start_as_current_span(
            f"{self._topic} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self._topic,
                "messaging.batch.message_count": len(members),
            },
        ):
            headers = kafka_headers()
            partitions = self._partitioning.get().partitions
            records = []
            for member in sorted(members):
                delivery = envelope_pb2.Delivery(
                    message_id=message_id,
                    chat_id=chat_id,
                    sender_id=sender,
                    recipient_id=member,
                    primary=member == sender,
                    body=body,
                    client_message_id=client_message_id,
                    created_at_ms=created_ms,
                    member_ids=sorted(members),
                )
                records.append(
                    (
                        self._topic,
                        str(member).encode(),
                        delivery.SerializeToString(),
                        partition_for(member, partitions),
                        headers,
                    )
                )
            try:
                await self._producer.produce_all(records)
            except ProduceFailed as exc:
                raise Unavailable(f"message not accepted, retry with the same id: {exc}") from None


def _record(message_id: int, created_ms: int, *, acked: bool) -> str:
    return json.dumps({"id": message_id, "created": created_ms, "acked": acked})
