"""Resume cursors: the (partition, offset) of the recipient's delivery record, kept opaque."""

from __future__ import annotations

from typing import NamedTuple

from chatlib.errors import InvalidArgument

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
