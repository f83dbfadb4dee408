"""Reading Kafka for resumes: partition watermarks, and replays of what the recent
deliveries in memory (``messaging/streams/recent.py``) no longer hold."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from chatlib import deliveries
from chatlib.kafka import Reader, fetch
from chatlib.settings import KafkaAccess

BATCH = 500
#: A replay that reads nothing for this long gives up.
STALLED_SECONDS = 10.0


class Watermarks:
    """(low, high) offsets of a partition, from a consumer used for nothing else.

    Callers asking for the same partition share one broker request, but only a request sent
    after they asked: a reconnect storm of thousands of resumes costs a few requests per
    partition instead of one each, and nobody gets an answer older than their question.
    """

    def __init__(self, kafka: KafkaAccess, topic: str) -> None:
        self._topic = topic
        self._reader = Reader(kafka, "messaging-watermarks")
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
                low, high = await asyncio.to_thread(self._ask, partition)
            except Exception as exc:  # noqa: BLE001 - handed to every caller waiting for it
                answer.set_exception(exc)
                return
            answer.set_result((low, high))

    def _ask(self, partition: int) -> tuple[int, int]:
        try:
            low, high = self._reader.get().get_watermark_offsets(
                TopicPartition(self._topic, partition), 10.0, False
            )
        except KafkaException:
            self._reader.discard()
            raise
        return int(low), int(high)

    def close(self) -> None:
        self._reader.close()


class ReplayFailed(Exception):
    """Kafka did not hand out the records asked for (a broker down or frozen, a read error)."""


class TooManyToReplay(Exception):
    """The gap holds more of the user's events than a replay hands out; re-sync instead."""


@dataclass
class _Request:
    user: int
    start: int
    end: int
    future: asyncio.Future[list[tuple[int, bytes]]]
    found: list[tuple[int, bytes]] = field(default_factory=list)
    overflowed: bool = False


class Replayer:
    """Replays from Kafka what the recent deliveries in memory no longer hold.

    Requests for the same partition are served together: one read from the oldest start to the
    newest end, each record handed to the requests of its recipient (read from the key, so the
    copies of users nobody asked for are never decoded; a group record is decoded for the
    members it lists). One consumer serves the process, so a
    reconnect storm costs a few reads per partition instead of a consumer per stream.
    """

    def __init__(self, kafka: KafkaAccess, topic: str, max_events: int = 20_000) -> None:
        self._topic = topic
        self._max_events = max_events
        self._reader = Reader(kafka, "messaging-replay")
        self._lock = asyncio.Lock()
        self._pending: dict[int, list[_Request]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def replay(
        self, partition: int, user: int, start: int, end: int
    ) -> list[tuple[int, bytes]]:
        """(offset, value) of every record for ``user`` at ``start <= offset < end``."""
        if start >= end:
            return []
        future: asyncio.Future[list[tuple[int, bytes]]] = asyncio.get_running_loop().create_future()
        waiting = self._pending.get(partition)
        if waiting is None:
            waiting = self._pending[partition] = []
            task = asyncio.create_task(self._serve(partition))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiting.append(_Request(user, start, end, future))
        return await future

    async def _serve(self, partition: int) -> None:
        async with self._lock:  # one consumer: one read at a time
            # Requests made from now on wait for the next read.
            requests = self._pending.pop(partition, [])
            try:
                await asyncio.to_thread(self._read_or_discard, partition, requests)
            except Exception as exc:  # noqa: BLE001 - handed to every request waiting for it
                for request in requests:
                    if not request.future.done():
                        request.future.set_exception(exc)
                return
        for request in requests:
            if request.future.done():
                continue
            if request.overflowed:
                request.future.set_exception(
                    TooManyToReplay(f"more than {self._max_events} events to replay")
                )
            else:
                request.future.set_result(request.found)

    def _read_or_discard(self, partition: int, requests: list[_Request]) -> None:
        try:
            self._read(partition, requests)
        except (ReplayFailed, KafkaException):
            self._reader.discard()
            raise

    def _read(self, partition: int, requests: list[_Request]) -> None:
        """Blocking: run in a thread."""
        by_user: dict[int, list[_Request]] = {}
        for request in requests:
            by_user.setdefault(request.user, []).append(request)
        start = min(r.start for r in requests)
        end = max(r.end for r in requests)
        consumer = self._reader.get()
        consumer.assign([TopicPartition(self._topic, partition, start)])
        try:
            position = start
            progressed = time.monotonic()
            while position < end:
                records = fetch(consumer, BATCH, 1.0)
                if records:
                    progressed = time.monotonic()
                elif time.monotonic() - progressed > STALLED_SECONDS:
                    # The resumes waiting on it fail (their clients resume again) rather than
                    # this read, and every resume of the process behind it, waiting for ever.
                    raise ReplayFailed(
                        f"replay of partition {partition} got nothing for {STALLED_SECONDS:g} s"
                        f" at offset {position} (of {end})"
                    )
                for record in records:
                    if record.partition() != partition:
                        continue  # left over from an earlier read of another partition
                    error = record.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            return
                        raise ReplayFailed(f"replay of partition {partition} failed: {error}")
                    offset = record.offset() or 0
                    position = offset + 1
                    if offset >= end:
                        return
                    for request in self._wanting(record, by_user):
                        if request.start <= offset < request.end and not request.overflowed:
                            request.found.append((offset, record.value() or b""))
                            request.overflowed = len(request.found) > self._max_events
        finally:
            consumer.unassign()

    @staticmethod
    def _wanting(record: Message, by_user: dict[int, list[_Request]]) -> list[_Request]:
        """The requests a record is for: by its key for a direct copy; a group record is
        decoded and its members looked up."""
        key = record.key()
        recipient = deliveries.recipient_of(key)
        if recipient is not None:
            return by_user.get(recipient, [])
        if not deliveries.is_group_key(key):
            return []
        try:
            members = set(deliveries.decode(record.value()).recipient_ids)
        except deliveries.InvalidDelivery:
            return []  # the history writer dead-letters it; streams cannot show it
        if len(by_user) < len(members):
            return [r for user, found in by_user.items() if user in members for r in found]
        return [r for member in members for r in by_user.get(member, ())]

    def close(self) -> None:
        self._reader.close()
