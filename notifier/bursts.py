"""Bursts: a recipient's messages in one chat, collected for ``collapse_seconds`` from the
first, become one notification. Pure bookkeeping (no I/O), and the offsets that may be
committed: those of records whose notification is finished, or that needed none."""

from __future__ import annotations

from dataclasses import dataclass, field

from protos.chat.v1 import common_pb2


@dataclass(frozen=True)
class Pending:
    """A message waiting in a burst, and where its record is (what may be committed)."""

    partition: int
    offset: int
    message: common_pb2.Message


@dataclass
class Burst:
    recipient: int
    chat_id: str
    kind: str
    #: When it is to be sent (monotonic seconds).
    due: float
    messages: list[Pending] = field(default_factory=list)


class Bursts:
    def __init__(self) -> None:
        self._open: dict[tuple[int, str], Burst] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(
        self, recipient: int, chat_id: str, kind: str, message: Pending, now: float, collapse: float
    ) -> None:
        key = (recipient, chat_id)
        burst = self._open.get(key)
        if burst is None:
            burst = self._open[key] = Burst(recipient, chat_id, kind, now + collapse)
        burst.messages.append(message)

    def due(self, now: float) -> list[Burst]:
        """The bursts whose time has come, taken out."""
        ready = [key for key, burst in self._open.items() if burst.due <= now]
        return [self._open.pop(key) for key in ready]

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget what came from partitions this process no longer owns (their next owner
        reads them again from the committed offset)."""
        for key in [k for k, b in self._open.items() if b.messages[0].partition in partitions]:
            del self._open[key]


class Offsets:
    """Per partition: the next offset to read and the offsets still being notified; what
    may be committed is the smallest of those, or the next offset if none."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        #: Per partition: offset -> how many notifications hold it (a group record is in one
        #: burst per offline member).
        self._busy: dict[int, dict[int, int]] = {}

    def read(self, partition: int, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def hold(self, partition: int, offset: int) -> None:
        busy = self._busy.setdefault(partition, {})
        busy[offset] = busy.get(offset, 0) + 1

    def release(self, partition: int, offset: int) -> None:
        busy = self._busy.get(partition)
        if busy is not None and offset in busy:
            busy[offset] -= 1
            if not busy[offset]:
                del busy[offset]

    def committable(self) -> dict[int, int]:
        found = {}
        for partition, upto in self._next.items():
            busy = self._busy.get(partition)
            found[partition] = min(busy) if busy else upto
        return found

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._next.pop(partition, None)
            self._busy.pop(partition, None)
