"""confluent-kafka adapted to asyncio: produce() returns once the broker acknowledged.

confluent-kafka's own asyncio producer does not carry headers, and trace context travels in
headers, so this wraps the synchronous Producer: a background thread serves delivery callbacks
and resolves each record's asyncio future on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

# Re-exported by confluent_kafka.admin at run time; the stubs declare it in cimpl only.
from confluent_kafka.cimpl import NewTopic

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Produced:
    partition: int
    offset: int


class ProduceFailed(Exception):
    """Kafka did not acknowledge a record (after the producer's own retries)."""


class AsyncProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        settings = {
            # Never lose or duplicate on retry: all in-sync replicas ack, and the broker dedups
            # the producer's own retries.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            **config,
        }
        self._producer = Producer(settings)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def produce(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> Produced:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Produced] = loop.create_future()

        def resolve(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                outcome: Produced | Exception = ProduceFailed(f"{topic}: {error.str()}")
            else:
                outcome = Produced(message.partition() or 0, message.offset() or 0)
            loop.call_soon_threadsafe(_settle, future, outcome)

        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=resolve, **extra
                )
                break
            except BufferError:
                # The local queue is full: wait for deliveries instead of growing without bound.
                await asyncio.sleep(0.01)
            except KafkaException as exc:
                raise ProduceFailed(f"{topic}: {exc}") from exc
        return await future

    async def produce_all(
        self, records: Sequence[tuple[str, bytes, bytes, int, Headers]]
    ) -> list[Produced]:
        """Produce every (topic, key, value, partition, headers) and wait for all acks."""
        return list(
            await asyncio.gather(
                *(
                    self.produce(topic, value, key=key, partition=partition, headers=headers)
                    for topic, key, value, partition, headers in records
                )
            )
        )

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.flush(timeout)


def _settle(future: asyncio.Future[Produced], outcome: Produced | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
    bootstrap: str, name: str, partitions: int, replication: int, config: dict[str, str]
) -> bool:
    """Create ``name`` if it does not exist; True if it was created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    if name in existing:
        found = len(existing[name].partitions)
        if found != partitions:
            raise KafkaException(
                f"topic {name} has {found} partitions, configured {partitions}: partitions are "
                "routing (stable_hash(user) % P) and cannot change in place"
            )
        return False
    topic = NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config)
    for future in admin.create_topics([topic]).values():
        future.result(timeout=30)
    return True
