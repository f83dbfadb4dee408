"""Feeding live streams: consume the partitions this server owns and push to each recipient.

The loop never awaits a client: ``StreamRegistry.publish`` only ``put_nowait``s.
"""

from __future__ import annotations

import asyncio
import logging

from confluent_kafka import Consumer, KafkaError, TopicPartition
from google.protobuf.message import DecodeError
from opentelemetry import trace

from chatlib.errors import Unavailable
from chatlib.kafka import fetch
from chatlib.telemetry import context_from_headers
from messaging import events
from messaging.replay import Watermarks
from messaging.streams import StreamRegistry

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

BATCH = 500
POLL_SECONDS = 0.2


class FanOut:
    def __init__(
        self,
        consumer: Consumer,
        registry: StreamRegistry,
        watermarks: Watermarks,
        topic: str,
        partitions: range,
    ) -> None:
        self._consumer = consumer
        self._watermarks = watermarks
        self._registry = registry
        self._topic = topic
        self._partitions = partitions
        self.assigned = False
        #: Per partition, the offset of the next record the fan-out will publish.
        self._next: dict[int, int] = {}

    def next_offset(self, partition: int) -> int:
        """Every record from this offset on will still be published to registered streams.

        A stream that registers now gets live what is at or after it; what is before it comes
        from a replay. Asking the fan-out instead of the broker makes a subscribe cost no
        round trip to Kafka.
        """
        if partition not in self._next:
            raise Unavailable("this server is still starting; retry in a moment")
        return self._next[partition]

    async def run(self, stop: asyncio.Event) -> None:
        # Live only: streams that need older events replay them from their cursor. The start
        # offsets are resolved here, before the server reports ready; a symbolic "end" would
        # be resolved on the first fetch, and a record produced before that would never be
        # pushed to a stream that subscribed in between.
        starts = []
        for partition in self._partitions:
            _, high = await self._watermarks.get(partition)
            starts.append(TopicPartition(self._topic, partition, high))
            self._next[partition] = high
        self._consumer.assign(starts)
        self.assigned = True
        logger.info("fan-out consuming %s partitions %s", self._topic, self._partitions)
        while not stop.is_set():
            records = await asyncio.to_thread(fetch, self._consumer, BATCH, POLL_SECONDS)
            for record in records:
                error = record.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        logger.warning("fan-out consumer error: %s", error)
                    continue
                self._next[record.partition() or 0] = (record.offset() or 0) + 1
                try:
                    recipient, event = events.decode(record)
                except (DecodeError, ValueError) as exc:
                    # History dead-letters it; live delivery just cannot show it.
                    logger.warning("skipping undecodable record at %s: %s", record.offset(), exc)
                    continue
                parent = context_from_headers(record.headers())  # type: ignore[arg-type]
                with tracer.start_as_current_span(
                    "messaging.deliver",
                    context=parent,
                    kind=trace.SpanKind.CONSUMER,
                    attributes={
                        "messaging.system": "kafka",
                        "messaging.destination.name": self._topic,
                        "messaging.kafka.partition": event.cursor.partition,
                        "messaging.kafka.offset": event.cursor.offset,
                    },
                ) as span:
                    span.set_attribute("chat.streams", self._registry.publish(recipient, event))
