"""Live streams: one bounded queue per connected stream; fan-out never waits for a client.

A stream whose queue is full is not given more events: it is marked overflowed, the client
gets the events already queued and then a ResumeRequired with its last cursor, and reconnects
(the replay from Kafka fills the gap). Memory per stream is bounded by the queue size.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from messaging.cursor import Cursor
from protos.chat.v1 import common_pb2

STREAMS = Gauge("messaging_live_streams", "Connected live streams")
PUSHED = Counter("messaging_events_pushed_total", "Events queued to live streams")
OVERFLOWS = Counter("messaging_stream_overflows_total", "Streams closed for falling behind")
REDIRECTS = Counter("messaging_stream_redirects_total", "Streams sent to a partition's new owner")


@dataclass(frozen=True)
class LiveEvent:
    cursor: Cursor
    message: common_pb2.Message


class RecentIds:
    """The last ``capacity`` message ids a stream delivered.

    A send retried after an unconfirmed attempt produces its records again with the same
    message id; the stream shows the message once. (Across a reconnect the set starts empty,
    so a copy that lands after the client's cursor is shown again; clients key messages by
    id.)
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._ids: dict[int, None] = {}

    def first_time(self, message_id: int) -> bool:
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]
        return True


@dataclass(frozen=True)
class Redirect:
    server: str
    target: str


class LiveStream:
    def __init__(self, user_id: int, partition: int, capacity: int) -> None:
        self.user_id = user_id
        self.partition = partition
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=capacity)
        self.overflowed = False
        #: Set when the partition moved away: the stream ends after what is already queued.
        self.redirect: Redirect | None = None
        self.wake = asyncio.Event()

    def offer(self, event: LiveEvent) -> None:
        if self.overflowed or self.redirect is not None:
            return
        try:
            self.queue.put_nowait(event)
            PUSHED.inc()
        except asyncio.QueueFull:
            self.overflowed = True
            OVERFLOWS.inc()
        self.wake.set()


class StreamRegistry:
    def __init__(self) -> None:
        self._by_user: dict[int, set[LiveStream]] = defaultdict(set)

    def add(self, stream: LiveStream) -> None:
        self._by_user[stream.user_id].add(stream)
        STREAMS.inc()

    def remove(self, stream: LiveStream) -> None:
        streams = self._by_user.get(stream.user_id)
        if streams is not None and stream in streams:
            streams.discard(stream)
            STREAMS.dec()
            if not streams:
                del self._by_user[stream.user_id]

    def publish(self, user_id: int, event: LiveEvent) -> int:
        streams = self._by_user.get(user_id)
        if not streams:
            return 0
        for stream in streams:
            stream.offer(event)
        return len(streams)

    def redirect(self, partition: int, to: Redirect) -> int:
        """End every stream of ``partition``: its events now come from another server."""
        moved = 0
        for streams in self._by_user.values():
            for stream in streams:
                if stream.partition == partition and stream.redirect is None:
                    stream.redirect = to
                    stream.wake.set()
                    moved += 1
        REDIRECTS.inc(moved)
        return moved

    def count(self) -> int:
        return sum(len(s) for s in self._by_user.values())
