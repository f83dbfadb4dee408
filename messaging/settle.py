"""Settling a message whose earlier attempt may or may not have reached Kafka.

That happens when the process that sent it died before Kafka answered, or when its producer
gave up on copies that were in flight (the broker may have written them). Producing every copy
again could deliver some twice; producing none could lose them. So a retry of such a message:

1. waits until the earlier attempt cannot write anything any more: its process no longer holds
   its worker lease (``messaging/send.py`` checks that; a process that loses its lease drops
   what it has not sent) and ``SETTLE_SECONDS`` have passed since the message was claimed;
2. takes the claim over (compare-and-swap), so that no other server settles it at once;
3. reads each recipient's partition from just before the claim to its current end, looking
   for copies of this message id (by record key first, so other users' records are not
   decoded);
4. produces only the copies that are missing.

This is the rare path (a crash, or Kafka gone for longer than the producer's delivery
timeout); the common one never reads Kafka before producing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import Counter

from chatlib import deliveries
from chatlib.errors import Unavailable
from chatlib.ids import timestamp_ms
from chatlib.kafka import AsyncProducer, ProduceFailed, Record, fetch, reader
from messaging.admission import Admission, Claim, Owner

logger = logging.getLogger(__name__)
SETTLED = Counter(
    "messaging_settled_copies_total",
    "Copies of uncertain earlier attempts, by whether they had landed",
    ["landed"],
)

#: How long after its claim a message's earlier attempt is certainly over: the worker lease
#: TTL (a dead process's lease is gone by then), a produce request's timeout, and a margin.
SETTLE_SECONDS = 60.0
#: Read from this long before the claim: record timestamps come from the producing process's
#: clock, the claim time from the same clock, so this only needs to cover rounding.
LOOKBACK_MS = 5_000

RecordsFor = Callable[[frozenset[int] | None], list[Record]]


class Settler:
    def __init__(
        self, producer: AsyncProducer, admission: Admission, bootstrap: str, topic: str
    ) -> None:
        self._producer = producer
        self._admission = admission
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer: Consumer | None = None
        self._lock = asyncio.Lock()

    async def settle(self, claim: Claim, owner: Owner, records_for: RecordsFor) -> Claim:
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
            try:
                landed = await asyncio.to_thread(self._landed, claim.message_id, wanted)
            except RuntimeError as exc:
                raise Unavailable(f"cannot read Kafka to settle a retried message: {exc}") from None
        missing = frozenset(
            recipient
            for record in wanted
            if (recipient := deliveries.recipient_of(record.key)) is not None
            and recipient not in landed
        )
        SETTLED.labels(landed="true").inc(len(wanted) - len(missing))
        SETTLED.labels(landed="false").inc(len(missing))
        logger.info(
            "settled message %d: %d of %d copies had landed",
            claim.message_id,
            len(wanted) - len(missing),
            len(wanted),
        )
        if missing:
            try:
                await self._producer.send(records_for(missing))
            except ProduceFailed as exc:
                raise Unavailable(
                    f"message {claim.message_id} was not confirmed by Kafka ({exc}); retry"
                ) from None
        return claim

    def _landed(self, message_id: int, wanted: list[Record]) -> set[int]:
        """Recipients whose copy of ``message_id`` is in Kafka. Blocking: run in a thread."""
        consumer = self._reader()
        keys: dict[int, set[bytes]] = defaultdict(set)
        for record in wanted:
            if record.key is not None:
                keys[record.partition].add(record.key)
        since = timestamp_ms(message_id) - LOOKBACK_MS
        found: set[int] = set()
        for partition, wanted_keys in keys.items():
            [start] = consumer.offsets_for_times(
                [TopicPartition(self._topic, partition, since)], 10.0
            )
            _, high = consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), 10.0, False
            )
            offset = start.offset if start.offset >= 0 else high
            if offset >= high:
                continue
            consumer.assign([TopicPartition(self._topic, partition, offset)])
            try:
                while offset < high:
                    batch = fetch(consumer, 1000, 5.0)
                    if not batch:
                        raise RuntimeError(
                            f"partition {partition} gave nothing before offset {high}"
                        )
                    for found_record in batch:
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
                            found.add(delivery.recipient_id)
            finally:
                consumer.unassign()
        return found

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = reader(self._bootstrap, "messaging-settle")
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
