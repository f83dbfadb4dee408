"""Resume cursors: the (partition, offset) of the recipient's delivery record, kept opaque;
and where a cursor lies on a user's trail of partitions once partitions were added."""

from __future__ import annotations

from typing import NamedTuple

from chatlib.errors import InvalidArgument
from chatlib.partitioning import Stretch

PREFIX = "v1."


class Cursor(NamedTuple):
    """Ordered as (partition, offset); a tuple, as one is made for every event delivered."""

    partition: int
    offset: int

    def encode(self) -> str:
        return f"{PREFIX}{self.partition}.{self.offset}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        try:
            if not raw.startswith(PREFIX):
                raise ValueError(raw)
            partition, offset = raw[len(PREFIX) :].split(".")
            cursor = cls(int(partition), int(offset))
        except ValueError:
            raise InvalidArgument(
                f"resume_cursor {raw[:40]!r} is not a cursor this server issued"
            ) from None
        if cursor.partition < 0 or cursor.offset < -1:
            raise InvalidArgument(f"resume_cursor {raw[:40]!r} is out of range")
        return cursor


class Resume(NamedTuple):
    """What a resume reads: closed stretches of partitions the user had before partitions
    were added (oldest first, from just after the cursor), then the current partition from
    just after offset ``after``."""

    earlier: list[Stretch]
    after: int


def resume_from(trail: list[Stretch], cursor: Cursor) -> Resume | None:
    """Where ``cursor`` lies on the user's ``trail`` (``Partitioning.trail``); None if it lies
    on none of the user's stretches (another user's cursor, or a made-up one)."""
    current = trail[-1]
    for index in range(len(trail) - 1, -1, -1):
        stretch = trail[index]
        if stretch.partition != cursor.partition or cursor.offset < stretch.start - 1:
            continue
        if stretch is current:
            return Resume([], cursor.offset)
        rest = Stretch(stretch.partition, cursor.offset + 1, stretch.end)
        earlier = [s for s in [rest, *trail[index + 1 : -1]] if s.start < s.end]
        return Resume(earlier, current.start - 1)
    return None
