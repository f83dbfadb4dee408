"""The notifier: reads every delivery (its own consumer group), and for recipients with no
live stream posts one notification per burst of messages in a chat.

Once per message per recipient, through crashes and replays:

* a record's offset is committed only once its notification is finished (delivered or
  dead-lettered) or it needed none, so nothing is skipped;
* after a notification is finished, the highest offset it covered is recorded per recipient
  and chat (``chat:notified:{user}``, a Redis hash), and a replayed record at or below it is
  not notified again. (Between the webhook's answer and that write, a crash would post
  again: the repeated post has the same ``notification_id``.)

Who is online is read from presence (``chatlib/presence_state.py``): when a batch is read
(a record for someone online is not even decoded) and again when the burst is due.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka import Consumer, Message
from prometheus_client import Counter

from chatlib import deliveries, preferences, presence_state
from chatlib.config_sections import Notifications
from chatlib.consumer_loop import ConsumerLoop
from chatlib.kafka import AsyncProducer, ProduceFailed, Record
from chatlib.live_config import LiveSection
from notifier.bursts import Burst, Bursts, Offsets, Pending
from notifier.webhook import Webhook
from protos.chat.v1 import common_pb2

logger = logging.getLogger(__name__)

BATCH = 1000
POLL_SECONDS = 0.2
COMMIT_SECONDS = 1.0
PREVIEW_CHARS = 120
JOINED = (common_pb2.ChatChange.CREATED, common_pb2.ChatChange.ADDED)
#: Notifications being tried at once, at most; reading pauses above it.
MAX_BUSY = 10_000
MARK_DAYS = 30
SENT = Counter("notifier_notifications_total", "Notifications finished", ["outcome"])
DELIVERED, DEAD = SENT.labels(outcome="delivered"), SENT.labels(outcome="dead_letter")
SKIPPED = Counter(
    "notifier_skipped_total", "Messages not notified", ["reason"]
)  # online, notified already, switched off

# KEYS: the recipient's marks. ARGV: chat id, offset, ttl seconds. Moves the mark up only.
_MARK = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def marks_key(user: int) -> str:
    return f"chat:notified:{user}"


class Notifier(ConsumerLoop):
    def __init__(
        self,
        consumer: Consumer,
        redis: aioredis.Redis,
        webhook: Webhook,
        dead_letters: AsyncProducer,
        settings: LiveSection[Notifications],
        *,
        topic: str,
        dead_letter_topic: str,
        group: str,
        renew: Callable[[], Consumer] | None = None,
    ) -> None:
        super().__init__(
            consumer,
            topic,
            group,
            batch=BATCH,
            poll_seconds=POLL_SECONDS,
            commit_seconds=COMMIT_SECONDS,
            fill=True,  # notifications wait seconds anyway: fuller batches cost less
            renew=renew,
        )
        self._redis = redis
        self._webhook = webhook
        self._dead_notifications = dead_letters
        self._settings = settings
        self._dead_letter_topic = dead_letter_topic
        self._mark = redis.register_script(_MARK)
        self._bursts = Bursts()
        self._offsets = Offsets()
        self._tasks: set[asyncio.Task[None]] = set()
        self._revoked: list[set[int]] = []

    # The loop's hooks.

    async def ready(self, stop: asyncio.Event) -> bool:
        """Read on while fewer than MAX_BUSY notifications are being tried."""
        if len(self._tasks) < MAX_BUSY:
            return True
        await asyncio.sleep(POLL_SECONDS)
        return False

    async def handle(self, records: list[Message]) -> None:
        self._forget_revoked()
        await self._read(records)

    def committable(self) -> dict[int, int]:
        return self._offsets.committable()

    async def tick(self) -> None:
        self._forget_revoked()
        for burst in self._bursts.due(time.monotonic()):
            task = asyncio.create_task(self._notify(burst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stopping(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def replaced(self) -> None:
        # As if every partition were revoked: whoever is assigned them next reads again from
        # the committed offsets (a notification already sent is skipped by its mark).
        self._revoked.clear()
        self._bursts = Bursts()
        self._offsets = Offsets()

    def revoked(self, partitions: set[int]) -> None:
        # Called inside a poll, on its thread: the loop applies it when the poll returns.
        self._revoked.append(partitions)

    def _forget_revoked(self) -> None:
        while self._revoked:
            gone = self._revoked.pop()
            self._bursts.drop_partitions(gone)
            self._offsets.forget(gone)
            self.forget(gone)

    async def _read(self, messages: list[Message]) -> None:
        """Open or extend bursts for the offline recipients of a batch."""
        settings = self._settings.get()
        records: list[tuple[int, int, int, Message, deliveries.Delivery | None]] = []
        for message in messages if settings.webhook_url else ():
            partition, offset, key = message.partition() or 0, message.offset() or 0, message.key()
            recipient = deliveries.recipient_of(key)
            if recipient is not None:
                records.append((recipient, partition, offset, message, None))
            elif deliveries.is_group_key(key):
                # A group record is decoded first: it names its recipients.
                delivery = self.decode(message)
                if delivery is None or not _notifiable(delivery, 0):
                    continue
                records += [
                    (member, partition, offset, message, delivery)
                    for member in delivery.recipient_ids
                    if member != delivery.sender_id
                ]
        offline: set[int] = set()
        if records:
            recipients = sorted({r[0] for r in records})
            found = await presence_state.read(self._redis, recipients)
            offline = {u for u, (online, _) in zip(recipients, found, strict=True) if not online}
        # Nothing below waits: the batch counts as read (and may be committed) only once every
        # record of it is in a burst or needs none.
        for message in messages:
            self._offsets.read(message.partition() or 0, message.offset() or 0)
        now = time.monotonic()
        shown: dict[tuple[int, int], common_pb2.Message] = {}  # a group record's, made once
        for recipient, partition, offset, message, known in records:
            if recipient not in offline:
                continue
            # One that does not decode: history dead-letters it.
            delivery = known if known is not None else self.decode(message)
            if delivery is None or not _notifiable(delivery, recipient):
                continue
            entry = shown.get((partition, offset))
            if entry is None:
                entry = shown[partition, offset] = deliveries.message_of(delivery)
            pending = Pending(partition, offset, entry)
            self._offsets.hold(partition, offset)
            self._bursts.add(
                recipient,
                delivery.chat_id,
                delivery.kind,
                pending,
                now,
                settings.collapse_seconds,
            )

    async def _notify(self, burst: Burst) -> None:
        try:
            await self._notify_once(burst)
        except Exception:
            logger.exception("notifying %d of %s failed", burst.recipient, burst.chat_id)
            return
        for message in burst.messages:
            self._offsets.release(message.partition, message.offset)

    async def _notify_once(self, burst: Burst) -> None:
        raw = await self._redis.hget(marks_key(burst.recipient), burst.chat_id)
        done = int(raw) if raw is not None else -1
        messages = [m for m in burst.messages if m.offset > done]
        if len(messages) < len(burst.messages):
            SKIPPED.labels(reason="notified").inc(len(burst.messages) - len(messages))
        if not messages:
            return
        [(online, _)] = await presence_state.read(self._redis, [burst.recipient])
        if online:
            SKIPPED.labels(reason="online").inc(len(messages))
            return
        prefs = await preferences.get(self._redis, burst.recipient)
        body = notification(burst, messages, previews=prefs.previews)
        outcome = await self._webhook.post(
            lambda: self._settings.get().webhook_url,
            body,
            lambda: self._settings.get().max_attempts,
        )
        if outcome.delivered:
            DELIVERED.inc()
        elif outcome.off:
            SKIPPED.labels(reason="off").inc(len(messages))
        else:
            await self._dead_letter(body, outcome.error, outcome.attempts)
        ttl = MARK_DAYS * 86_400
        last = max(m.offset for m in messages)
        await self._mark(keys=[marks_key(burst.recipient)], args=[burst.chat_id, last, ttl])

    async def _dead_letter(self, body: dict[str, Any], error: str, attempts: int) -> None:
        logger.warning(
            "notification %s dead-lettered after %d tries: %s",
            body["notification_id"],
            attempts,
            error,
        )
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.error", error.encode()),
            ("dlq.attempts", str(attempts).encode()),
        ]
        record = Record(
            self._dead_letter_topic,
            str(body["recipient_id"]).encode(),
            json.dumps(body).encode(),
            -1,
            headers,
        )
        try:
            await self._dead_notifications.send([record])
        except ProduceFailed as exc:
            raise RuntimeError(f"dead-lettering failed: {exc}") from exc
        DEAD.inc()


def _notifiable(delivery: deliveries.Delivery, recipient: int) -> bool:
    """For ``recipient`` (0: for someone on the record): a message someone else wrote, or
    someone else adding the recipient to a group (not a receipt, an amendment, or another
    change to the chat)."""
    recipient = recipient or delivery.recipient_id
    if (
        deliveries.is_receipt(delivery)
        or delivery.HasField("amendment")
        or delivery.sender_id == recipient
    ):
        return False
    change = delivery.change
    if delivery.HasField("change"):
        if not recipient:  # anyone the change adds
            return change.action in JOINED
        return change.action in JOINED and recipient in change.user_ids
    return True


def notification(burst: Burst, messages: list[Pending], *, previews: bool) -> dict[str, Any]:
    """The webhook body for a burst (ids are strings: JSON numbers lose 64-bit precision)."""
    last = messages[-1]
    return {
        "notification_id": f"{burst.recipient}:{burst.chat_id}:{last.partition}:{last.offset}",
        "recipient_id": str(burst.recipient),
        "chat_id": burst.chat_id,
        "chat_kind": burst.kind or "direct",
        "collapse_key": burst.chat_id,
        "sender_id": str(last.message.sender_id),
        "sender_ids": sorted({str(m.message.sender_id) for m in messages}),
        "message_ids": [str(m.message.message_id) for m in messages],
        "count": len(messages),
        "preview": last.message.body[:PREVIEW_CHARS] if previews else None,
    }
