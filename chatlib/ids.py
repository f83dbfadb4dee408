"""64-bit Snowflake ids: 41 bits of milliseconds, 10 bits of worker id, 12 bits of sequence."""

from __future__ import annotations

import time
from collections.abc import Callable

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
TIME_SHIFT = WORKER_BITS + SEQUENCE_BITS
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


def timestamp_ms(snowflake: int) -> int:
    """Milliseconds since the Unix epoch at which ``snowflake`` was minted."""
    return (snowflake >> TIME_SHIFT) + EPOCH_MS


def smallest_id_at(unix_ms: int) -> int:
    """The smallest id minted at or after ``unix_ms`` (for range bounds)."""
    return max(0, unix_ms - EPOCH_MS) << TIME_SHIFT


class Snowflake:
    """Mints strictly increasing ids; ``worker_id`` is asked for on every call, so a lost lease
    stops minting at once (the callable raises)."""

    def __init__(
        self,
        worker_id: Callable[[], int],
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._worker_id = worker_id
        self._clock_ms = clock_ms
        self._last_ms = -1
        self._sequence = 0

    def advance_past(self, floor: int) -> None:
        """Make every id minted from now on larger than ``floor`` (minted anywhere): the
        membership fence asks for it when this process's clock is behind another's."""
        floor_ms = (floor >> TIME_SHIFT) + EPOCH_MS
        if self._last_ms <= floor_ms:
            self._last_ms, self._sequence = floor_ms + 1, 0

    def next_id(self) -> int:
        worker = self._worker_id()
        now = max(self._clock_ms(), self._last_ms)  # never step back if the wall clock does
        if now == self._last_ms:
            self._sequence = (self._sequence + 1) & MAX_SEQUENCE
            if self._sequence == 0:
                now = self._last_ms + 1  # 4,096 ids in one millisecond: borrow the next one
        else:
            self._sequence = 0
        self._last_ms = now
        return ((now - EPOCH_MS) << TIME_SHIFT) | (worker << SEQUENCE_BITS) | self._sequence


def signed(value: int) -> int:
    """Ids are unsigned 64-bit on the wire (fixed64); Cassandra's bigint is signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def write_time(message_id: int) -> int:
    """A message's time in microseconds, as the write time of the cells it sets, so that the
    newest wins whatever order writes arrive in.

    Ids of one millisecond keep their order through the sequence bits (up to 1,000 of them);
    the value stays comparable with the server-side write times of every other cell.
    """
    return timestamp_ms(message_id) * 1000 + (message_id & 0xFFF) % 1000
