"""Live streams: one bounded queue per connected stream; fan-out never waits for a client.

A stream whose queue is full is not given more events: it is marked overflowed, the client
gets the events already queued and then a ResumeRequired with its last cursor, and reconnects
(the replay from Kafka fills the gap). Memory per stream is bounded by the queue size.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import Counter, Gauge

from chatlib import deliveries
from messaging.streams.cursor import Cursor
from protos.chat.v1 import envelope_pb2, messaging_pb2

STREAMS = Gauge("messaging_live_streams", "Connected live streams")
PUSHED = Counter("messaging_events_pushed_total", "Events queued to live streams")
OVERFLOWS = Counter("messaging_stream_overflows_total", "Streams closed for falling behind")
ENDED = Counter(
    "messaging_streams_ended_total", "Streams ended because their session or token ended"
)
REDIRECTS = Counter("messaging_stream_redirects_total", "Streams sent to a partition's new owner")


class LiveEvent(NamedTuple):
    """An event as every stream of its recipient is given it: built once per record. An
    ephemeral event (typing, presence: ``messaging/signals/channel.py``) has no cursor: it is not in
    the log."""

    cursor: Cursor | None
    message_id: int
    event: messaging_pb2.ClientEvent


def message_event(cursor: Cursor, delivery: envelope_pb2.Delivery) -> LiveEvent:
    """The client event of a delivery, built in place (no copies). A receipt's event has
    message id 0: it is never taken for a repeated message."""
    event = messaging_pb2.ClientEvent(cursor=cursor.encode())
    if deliveries.is_receipt(delivery):
        deliveries.receipt_of(delivery, into=event.receipt)
        return LiveEvent(cursor, 0, event)
    deliveries.message_of(delivery, into=event.message)
    return LiveEvent(cursor, delivery.message_id, event)


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
        """False for an id shown already; 0 (a receipt, not a message) is always new."""
        if not message_id:
            return True
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
    __slots__ = (
        "capacity",
        "closing",
        "ended",
        "overflowed",
        "partition",
        "queue",
        "redirect",
        "session_id",
        "user_id",
        "wake",
    )

    def __init__(self, user_id: int, partition: int, capacity: int, session_id: str = "") -> None:
        self.user_id = user_id
        self.partition = partition
        self.capacity = capacity
        self.session_id = session_id
        #: Set when the stream's session ended or its token expired: why, for the client.
        self.ended: str | None = None
        #: A plain deque bounded by ``offer``: an idle stream holds no queue machinery.
        self.queue: deque[LiveEvent] = deque()
        self.overflowed = False
        #: Set when the partition moved away: the stream ends after what is already queued.
        self.redirect: Redirect | None = None
        #: Set when this server stops: the stream ends after what is queued, and the client
        #: resumes from its cursor elsewhere.
        self.closing = False
        self.wake = asyncio.Event()

    def offer(self, event: LiveEvent) -> None:
        if self.overflowed or self.redirect is not None or self.ended is not None:
            return
        if len(self.queue) >= self.capacity:
            self.overflowed = True
            OVERFLOWS.inc()
        else:
            self.queue.append(event)
            PUSHED.inc()
        self.wake.set()


def end(stream: LiveStream, reason: str) -> None:
    if stream.ended is None:
        stream.ended = reason
        ENDED.inc()
        stream.wake.set()


class StreamRegistry:
    def __init__(self) -> None:
        self._by_user: dict[int, set[LiveStream]] = defaultdict(set)
        #: The same streams by partition, so a partition move touches only its own streams.
        self._by_partition: dict[int, set[LiveStream]] = defaultdict(set)
        #: And by session, so a revocation finds its streams without a scan.
        self._by_session: dict[str, set[LiveStream]] = defaultdict(set)
        #: Told (user, streams now) when a user's first stream here opens or last one ends.
        self._on_change: list[Callable[[int, int], None]] = []

    def on_change(self, callback: Callable[[int, int], None]) -> None:
        self._on_change.append(callback)

    def add(self, stream: LiveStream) -> None:
        first = stream.user_id not in self._by_user
        self._by_user[stream.user_id].add(stream)
        self._by_partition[stream.partition].add(stream)
        self._by_session[stream.session_id].add(stream)
        STREAMS.inc()
        if first:
            for callback in self._on_change:
                callback(stream.user_id, 1)

    def remove(self, stream: LiveStream) -> None:
        streams = self._by_user.get(stream.user_id)
        if streams is not None and stream in streams:
            streams.discard(stream)
            STREAMS.dec()
            if not streams:
                del self._by_user[stream.user_id]
                for callback in self._on_change:
                    callback(stream.user_id, 0)
            in_partition = self._by_partition[stream.partition]
            in_partition.discard(stream)
            if not in_partition:
                del self._by_partition[stream.partition]
            in_session = self._by_session[stream.session_id]
            in_session.discard(stream)
            if not in_session:
                del self._by_session[stream.session_id]

    def streams_of(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def users(self) -> list[int]:
        return list(self._by_user)

    def has(self, user_id: int) -> bool:
        """True if the user has a live stream here (only then is a record worth decoding)."""
        return user_id in self._by_user

    def publish(self, user_id: int, event: LiveEvent) -> int:
        streams = self._by_user.get(user_id)
        if not streams:
            return 0
        for stream in streams:
            # Once partitions are added, a user's stream opened under the old count may see
            # the user's records of the new partition before it is moved (``rehome``); those
            # reach it after its resume, in order, not here.
            if event.cursor is None or event.cursor.partition == stream.partition:
                stream.offer(event)
        return len(streams)

    def redirect(self, partition: int, to: Redirect) -> int:
        """End every stream of ``partition``: its events now come from another server."""
        moved = 0
        for stream in self._by_partition.get(partition, ()):
            if stream.redirect is None:
                stream.redirect = to
                stream.wake.set()
                moved += 1
        REDIRECTS.inc(moved)
        return moved

    def rehome(self, partition_of: Callable[[int], int], to: Callable[[int], Redirect]) -> int:
        """Partitions were added: end every stream whose user now has another partition,
        sending it to that partition's server (where it resumes from its cursor, the rest of
        the old partition first)."""
        moved = 0
        for streams in self._by_user.values():
            for stream in streams:
                partition = partition_of(stream.user_id)
                if partition != stream.partition and stream.redirect is None:
                    stream.redirect = to(partition)
                    stream.wake.set()
                    moved += 1
        REDIRECTS.inc(moved)
        return moved

    def close_all(self) -> int:
        """End every stream (this server is stopping), each after what is queued for it."""
        closed = 0
        for streams in self._by_user.values():
            for stream in streams:
                if not stream.closing:
                    stream.closing = True
                    stream.wake.set()
                    closed += 1
        return closed

    def end_sessions(self, session_ids: list[str], reason: str) -> int:
        """End every stream of the sessions (they were revoked): each is told ``reason``
        after the events already queued for it."""
        ended = 0
        for session_id in session_ids:
            for stream in self._by_session.get(session_id, ()):
                end(stream, f"the session has ended: {reason}")
                ended += 1
        return ended

    def count(self) -> int:
        return sum(len(s) for s in self._by_user.values())
