"""Settling a message whose earlier attempt may or may not have reached Kafka.

That happens when the process that sent it died before Kafka answered, or when its producer
gave up on copies that were in flight (the broker may have written them). Producing every copy
again could deliver some twice; producing none could lose them. So a retry of such a message:

1. waits until the earlier attempt cannot write anything any more: its process no longer holds
   its worker lease (``messaging/send/sender.py`` checks that; a process that loses its lease drops
   what it has not sent) and ``SETTLE_SECONDS`` have passed since the message was claimed (a
   producer never sends a record later than its delivery timeout after it was produced);
2. takes the claim over (compare-and-swap), so that no other server settles it at once;
3. reads each recipient's partition from just before the claim to its current end, looking
   for records of this message id (by record key first, so other users' copies and other
   chats' group records are not decoded); if partitions were added since, the partitions the
   recipient had before too;
4. produces records only for the recipients none of whose records landed (a group record
   that landed covers every member it lists).

This is the rare path (a crash, or Kafka gone for longer than the producer's delivery
timeout); the common one never reads Kafka before producing.

**How long a retry waits.** Once Kafka and the sender's server answer, a retry is answered
(with the message's first id) by the later of ``SETTLE_SECONDS`` after the first attempt and
the lease's TTL (15 s) after its process died, plus the read and the produce here, which
``READ_SECONDS`` bounds: a read that cannot finish answers UNAVAILABLE, and the next retry
tries again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import Counter

from chatlib import deliveries
from chatlib.errors import Unavailable
from chatlib.ids import timestamp_ms
from chatlib.kafka import (
    DELIVERY_TIMEOUT_MS,
    AsyncProducer,
    ProduceFailed,
    Reader,
    Record,
    fetch,
)
from chatlib.partitioning import Partitioning
from chatlib.settings import KafkaAccess
from messaging.send.admission import Admission, Claim, Owner

logger = logging.getLogger(__name__)
SETTLED = Counter(
    "messaging_settled_copies_total",
    "Copies of uncertain earlier attempts, by whether they had landed",
    ["landed"],
)

#: How long after its claim a message's earlier attempt is certainly over: the producer's
#: delivery timeout, and a margin for the clocks of two servers (the claim's time is the first
#: server's, the age is measured on the settling one's).
SETTLE_SECONDS = DELIVERY_TIMEOUT_MS / 1000 + 10.0
#: Read from this long before the claim: record timestamps come from the producing process's
#: clock, the claim time from the same clock, so this only needs to cover rounding.
LOOKBACK_MS = 5_000
#: The longest one settling may read Kafka before it gives up (UNAVAILABLE; a retry reads again).
READ_SECONDS = 10.0

RecordsFor = Callable[[frozenset[int] | None], list[Record]]


class Settler:
    def __init__(
        self, producer: AsyncProducer, admission: Admission, kafka: KafkaAccess, topic: str
    ) -> None:
        self._producer = producer
        self._admission = admission
        self._topic = topic
        self._reader = Reader(kafka, "messaging-settle")
        self._lock = asyncio.Lock()
        # Its own thread: a settling never waits behind other blocking work of the process.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settle")

    async def settle(
        self, claim: Claim, owner: Owner, records_for: RecordsFor, partitioning: Partitioning
    ) -> Claim:
        """Make sure every copy of the claimed message is in Kafka once; returns the claim,
        now held by ``owner``. Raises Unavailable while that cannot be decided yet."""
        age = time.time() - timestamp_ms(claim.message_id) / 1000
        if age < SETTLE_SECONDS:
            raise Unavailable(
                f"an earlier attempt of message {claim.message_id} may still reach Kafka; retry"
                f" in {math.ceil(SETTLE_SECONDS - age)} s with the same client_message_id"
            )
        if claim.owner != owner:
            taken = await self._admission.take_over(claim, owner)
            if taken is None:
                raise Unavailable(
                    f"message {claim.message_id} is being completed by another server; retry"
                )
            claim = taken
        wanted = records_for(None)
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                landed = await loop.run_in_executor(
                    self._thread, self._landed, claim.message_id, wanted, partitioning
                )
            except (RuntimeError, KafkaException) as exc:
                # Logged: a retry refused for this reason again and again is a broken reader.
                logger.warning("settling message %d: Kafka not read: %s", claim.message_id, exc)
                raise Unavailable(f"cannot read Kafka to settle a retried message: {exc}") from None
        recipients = {r for record in wanted for r in _recipients(record)}
        missing = frozenset(recipients - landed)
        SETTLED.labels(landed="true").inc(len(recipients) - len(missing))
        SETTLED.labels(landed="false").inc(len(missing))
        logger.info(
            "settled message %d: %d of %d recipients' copies had landed",
            claim.message_id,
            len(recipients) - len(missing),
            len(recipients),
        )
        if missing:
            try:
                await self._producer.send(records_for(missing))
            except ProduceFailed as exc:
                raise Unavailable(
                    f"message {claim.message_id} was not confirmed by Kafka ({exc}); retry"
                ) from None
        return claim

    def _landed(
        self, message_id: int, wanted: list[Record], partitioning: Partitioning
    ) -> set[int]:
        """Recipients whose copy of ``message_id`` is in Kafka. Blocking: run in a thread.
        Raises RuntimeError when the partitions cannot be read to their end in READ_SECONDS."""
        try:
            return self._read_landed(self._reader.get(), message_id, wanted, partitioning)
        except (RuntimeError, KafkaException):
            self._reader.discard()
            raise

    def _read_landed(
        self,
        consumer: Consumer,
        message_id: int,
        wanted: list[Record],
        partitioning: Partitioning,
    ) -> set[int]:
        deadline = time.monotonic() + READ_SECONDS
        keys: dict[int, set[bytes]] = defaultdict(set)
        for record in wanted:
            if record.key is not None:
                keys[record.partition].add(record.key)
                if partitioning.eras:
                    # The earlier attempt may have been made before partitions were added.
                    for recipient in _recipients(record):
                        for stretch in partitioning.trail(recipient):
                            keys[stretch.partition].add(record.key)
        since = timestamp_ms(message_id) - LOOKBACK_MS
        found: set[int] = set()
        for partition, wanted_keys in keys.items():
            where = TopicPartition(self._topic, partition)
            [start] = consumer.offsets_for_times(
                [TopicPartition(self._topic, partition, since)], _left(deadline)
            )
            _, high = consumer.get_watermark_offsets(where, _left(deadline), False)
            offset = start.offset if start.offset >= 0 else high
            if offset >= high:
                continue
            consumer.assign([TopicPartition(self._topic, partition, offset)])
            try:
                while offset < high:
                    for found_record in fetch(consumer, 1000, min(1.0, _left(deadline))):
                        if found_record.partition() != partition:
                            continue  # left over from an earlier read of another partition
                        error = found_record.error()
                        if error is not None:
                            if error.code() == KafkaError._PARTITION_EOF:
                                offset = high
                                break
                            raise RuntimeError(str(error))
                        offset = (found_record.offset() or 0) + 1
                        if found_record.key() not in wanted_keys:
                            continue
                        try:
                            delivery = deliveries.decode(found_record.value())
                        except deliveries.InvalidDelivery:
                            continue
                        if delivery.message_id == message_id and not deliveries.is_receipt(
                            delivery
                        ):
                            found.update(deliveries.recipients(delivery))
                    if offset < high and time.monotonic() >= deadline:
                        raise RuntimeError(
                            f"partition {partition} was not read to offset {high} within"
                            f" {READ_SECONDS:g} s (at {offset})"
                        )
            finally:
                consumer.unassign()
        return found

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._reader.close()


def _recipients(record: Record) -> list[int]:
    """Whom a record made here goes to (a group record lists them in its value)."""
    recipient = deliveries.recipient_of(record.key)
    if recipient is not None:
        return [recipient]
    return deliveries.recipients(deliveries.decode(record.value))


def _left(deadline: float) -> float:
    """Seconds until ``deadline``, at least a little: a call with no time left fails at once."""
    return max(0.1, deadline - time.monotonic())
