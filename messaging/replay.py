"""Replaying a recipient's missed events from Kafka, from a resume cursor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from confluent_kafka import Consumer, KafkaError, TopicPartition
from google.protobuf.message import DecodeError

from chatlib.kafka import fetch
from messaging import events
from messaging.streams import LiveEvent

BATCH = 500


class Watermarks:
    """(low, high) offsets of a partition, from a consumer used for nothing else.

    Callers asking for the same partition share one broker request, but only a request sent
    after they asked: a reconnect storm of thousands of resumes costs a few requests per
    partition instead of one each, and nobody gets an answer older than their question.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"messaging-watermarks-{uuid.uuid4().hex}"}
        )
        self._lock = asyncio.Lock()
        #: Per partition, the answer the next request will give; joined until it is sent.
        self._next: dict[int, asyncio.Future[tuple[int, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, partition: int) -> tuple[int, int]:
        answer = self._next.get(partition)
        if answer is None:
            answer = self._next[partition] = asyncio.get_running_loop().create_future()
            # Retrieved here too, so a failure nobody waits for any more is not reported as
            # "never retrieved".
            answer.add_done_callback(lambda done: done.cancelled() or done.exception())
            task = asyncio.create_task(self._request(partition, answer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(answer)

    async def _request(self, partition: int, answer: asyncio.Future[tuple[int, int]]) -> None:
        async with self._lock:  # one consumer: one request at a time
            # Whoever asks from now on waits for the next request, sent after they asked.
            del self._next[partition]
            try:
                low, high = await asyncio.to_thread(
                    self._consumer.get_watermark_offsets,
                    TopicPartition(self._topic, partition),
                    10.0,
                    False,
                )
            except Exception as exc:  # noqa: BLE001 - handed to every caller waiting for it
                answer.set_exception(exc)
                return
            answer.set_result((int(low), int(high)))

    def close(self) -> None:
        self._consumer.close()


async def replay(
    bootstrap: str, topic: str, partition: int, start: int, end: int, user_id: int
) -> AsyncIterator[LiveEvent]:
    """Every event for ``user_id`` at offsets [start, end) of ``partition``, in order."""
    if start >= end:
        return
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # Never committed: the group id only satisfies the client.
            "group.id": f"messaging-replay-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        while position < end:
            records = await asyncio.to_thread(fetch, consumer, BATCH, 1.0)
            for record in records:
                error = record.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise RuntimeError(f"replay of partition {partition} failed: {error}")
                offset = record.offset() or 0
                position = offset + 1
                if offset >= end:
                    return
                try:
                    recipient, event = events.decode(record)
                except (DecodeError, ValueError):
                    continue
                if recipient == user_id:
                    yield event
    finally:
        await asyncio.to_thread(consumer.close)
