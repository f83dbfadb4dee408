"""Who sent which message of a chat, for the first minutes of its life.

An edit, deletion or reaction is checked against the message it names (``messaging/send/amend.py``).
History's table holds every message, but only once the history writer got to it, and the writer
may lag by seconds (a restart, a rebalance) or minutes (Cassandra slow or away). So the send path
records each new message here, in the same Redis script that claims it
(``messaging/send/admission.py``), before any copy is produced: an amendment of a message sent a
moment ago finds it at once, whatever the writer is doing, and an id this chat never had is
answered NOT_FOUND at once instead of being looked for again and again.

``chat:sent:{<chat>}:<minute>`` is a hash per chat and minute of the message ids' time: message
id -> sender id (``<sender>:d`` once a deletion of it was acknowledged). It expires
``KEEP_MS`` after its minute ends; older messages are looked up in history's table, which the
writer has long written by then unless it is that far behind.

A claim whose produce certainly failed is released together with its record
(``Admission.release``): nothing amends a message no copy of which exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatlib.ids import timestamp_ms
from chatlib.redis_wire import RedisWire

#: A record's key spans this much of the message ids' time.
SLOT_MS = 60_000
#: How long after its minute a record is kept.
KEEP_MS = 15 * 60_000
DELETED = b":d"


def key(chat_id: str, message_id: int) -> str:
    return f"chat:sent:{{{chat_id}}}:{timestamp_ms(message_id) // SLOT_MS}"


def expires_at_ms(message_id: int) -> int:
    """When the record of ``message_id`` goes (the same for every message of its minute)."""
    return (timestamp_ms(message_id) // SLOT_MS + 1) * SLOT_MS + KEEP_MS


@dataclass(frozen=True)
class Sent:
    sender_id: int
    deleted: bool


class SentMessages:
    def __init__(self, wire: RedisWire) -> None:
        self._wire = wire

    async def lookup(self, chat_id: str, message_id: int) -> Sent | None:
        """The message's record, or None if this chat has none for it (never sent here, or
        older than the records kept). Raises what a failed Redis call raises."""
        found = await self._wire.call(b"HGET", key(chat_id, message_id), message_id)
        if found is None:
            return None
        raw = bytes(found)
        deleted = raw.endswith(DELETED)
        return Sent(int(raw[: -len(DELETED)] if deleted else raw), deleted)

    async def mark_deleted(self, chat_id: str, message_id: int, sender_id: int) -> None:
        """Once a deletion is acknowledged: the message may not be edited or reacted to."""
        where = key(chat_id, message_id)
        await self._wire.pipeline(
            [
                (b"HSET", where, message_id, b"%d%b" % (sender_id, DELETED)),
                (b"PEXPIREAT", where, expires_at_ms(message_id)),
            ]
        )
