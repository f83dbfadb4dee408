"""Time buckets of messages_by_chat: a chat's messages are split into 10-day partitions. The
history writer writes by them; messaging reads a message by them (edits and reactions check
the message they amend)."""

from __future__ import annotations

from chatlib.ids import timestamp_ms

BUCKET_MS = 10 * 24 * 3600 * 1000


def bucket_of(message_id: int) -> int:
    return timestamp_ms(message_id) // BUCKET_MS


def bucket_at(unix_ms: int) -> int:
    return unix_ms // BUCKET_MS
