"""Cassandra access for history: messages, per-user chat state, chats, users."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

from chatlib.cassandra import AsyncSession
from history.buckets import bucket_at, bucket_of
from protos.chat.v1 import envelope_pb2

PREVIEW_CHARS = 120
RECENT_IDS = 32
_PAGE = (
    "SELECT message_id, chat_id, sender_id, body, client_message_id, created_at"
    " FROM messages_by_chat WHERE chat_id = ? AND bucket = ?"
)
_NEWER = _PAGE + " AND message_id > ? ORDER BY message_id ASC LIMIT ?"
_OLDER = _PAGE + " AND message_id < ? LIMIT ?"


@dataclass(frozen=True)
class StoredMessage:
    message_id: int
    chat_id: str
    sender_id: int
    body: str
    client_message_id: str
    created_at_ms: int


@dataclass(frozen=True)
class ChatRow:
    chat_id: str
    kind: str
    member_ids: frozenset[int]
    first_bucket: int


class HistoryStore:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def write_message(self, delivery: envelope_pb2.Delivery) -> None:
        """Idempotent: an upsert keyed by (chat, bucket, message id)."""
        await self.db.execute(
            "INSERT INTO messages_by_chat (chat_id, bucket, message_id, sender_id, body,"
            " client_message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                delivery.chat_id,
                bucket_of(delivery.message_id),
                _signed(delivery.message_id),
                _signed(delivery.sender_id),
                delivery.body,
                delivery.client_message_id,
                delivery.created_at_ms,
            ),
        )

    async def apply_chat_state(
        self, delivery: envelope_pb2.Delivery, partition: int, offset: int
    ) -> bool:
        """Fold one delivery into the recipient's chat state; False if it was already applied.

        Only one writer handles a recipient's partition at a time (consumer-group assignment),
        so read-modify-write per (user, chat) is safe; the offset and recent-id checks make a
        replay or a duplicated record a no-op.
        """
        user = _signed(delivery.recipient_id)
        rows = await self.db.execute(
            "SELECT last_message_id, unread_count, read_watermark, applied_partition,"
            " applied_offset, recent_message_ids FROM chats_by_user"
            " WHERE user_id = ? AND chat_id = ?",
            (user, delivery.chat_id),
        )
        row = rows[0] if rows else None
        if (
            row is not None
            and row.applied_partition == partition
            and row.applied_offset is not None
            and row.applied_offset >= offset
        ):
            return False
        recent: list[int] = list(row.recent_message_ids or []) if row is not None else []
        message = _signed(delivery.message_id)
        if message in recent:
            await self.db.execute(
                "UPDATE chats_by_user SET applied_partition = ?, applied_offset = ?"
                " WHERE user_id = ? AND chat_id = ?",
                (partition, offset, user, delivery.chat_id),
            )
            return False
        last = row.last_message_id if row is not None and row.last_message_id is not None else None
        unread = (row.unread_count or 0) if row is not None else 0
        watermark = (row.read_watermark or 0) if row is not None else 0
        if delivery.sender_id != delivery.recipient_id and message > watermark:
            unread += 1
        recent = [*recent, message][-RECENT_IDS:]
        members = {_signed(m) for m in delivery.member_ids}
        kind = "direct" if delivery.chat_id.startswith("d:") else "group"
        if last is None or message > last:
            await self.db.execute(
                "UPDATE chats_by_user SET kind = ?, member_ids = ?, last_message_id = ?,"
                " last_sender_id = ?, last_preview = ?, unread_count = ?,"
                " applied_partition = ?, applied_offset = ?, recent_message_ids = ?"
                " WHERE user_id = ? AND chat_id = ?",
                (
                    kind,
                    members,
                    message,
                    _signed(delivery.sender_id),
                    delivery.body[:PREVIEW_CHARS],
                    unread,
                    partition,
                    offset,
                    recent,
                    user,
                    delivery.chat_id,
                ),
            )
        else:
            # An older message arriving late: it counts as unread but is not the preview.
            await self.db.execute(
                "UPDATE chats_by_user SET unread_count = ?, applied_partition = ?,"
                " applied_offset = ?, recent_message_ids = ? WHERE user_id = ? AND chat_id = ?",
                (unread, partition, offset, recent, user, delivery.chat_id),
            )
        return True

    async def chat(self, chat_id: str) -> ChatRow | None:
        rows = await self.db.execute(
            "SELECT chat_id, kind, member_ids, created_at FROM chats WHERE chat_id = ?",
            (chat_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return ChatRow(
            chat_id=row.chat_id,
            kind=row.kind,
            member_ids=frozenset(_unsigned(m) for m in row.member_ids or ()),
            # One bucket of slack: a message id minted on a server whose clock is slightly behind
            # the one that created the chat may fall just before the creation bucket.
            first_bucket=bucket_at(_millis(row.created_at)) - 1,
        )

    async def chats_of(self, user_id: int, limit: int) -> list[Any]:
        rows = await self.db.execute(
            "SELECT chat_id, kind, member_ids, last_message_id, last_sender_id, last_preview,"
            " unread_count FROM chats_by_user WHERE user_id = ? LIMIT ?",
            (_signed(user_id), limit),
        )
        return sorted(rows, key=lambda r: r.last_message_id or 0, reverse=True)

    async def page(
        self, chat: ChatRow, *, before_id: int, after_id: int, limit: int
    ) -> tuple[list[StoredMessage], bool]:
        """Up to ``limit`` messages by id cursor, walking buckets; and whether more exist."""
        wanted = limit + 1
        found: list[Any] = []
        now_bucket = bucket_at(int(time.time() * 1000))
        if after_id:
            bucket = max(bucket_of(after_id), chat.first_bucket)
            while bucket <= now_bucket + 1 and len(found) < wanted:
                found += await self.db.execute(
                    _NEWER,
                    (chat.chat_id, bucket, _signed(after_id), wanted - len(found)),
                )
                bucket += 1
        else:
            bucket = bucket_of(before_id) if before_id else now_bucket + 1
            bound = _signed(before_id) if before_id else 2**63 - 1
            while bucket >= chat.first_bucket and len(found) < wanted:
                found += await self.db.execute(
                    _OLDER,
                    (chat.chat_id, bucket, bound, wanted - len(found)),
                )
                bucket -= 1
        messages = [
            StoredMessage(
                message_id=_unsigned(r.message_id),
                chat_id=r.chat_id,
                sender_id=_unsigned(r.sender_id),
                body=r.body or "",
                client_message_id=r.client_message_id or "",
                created_at_ms=_millis(r.created_at),
            )
            for r in found[:limit]
        ]
        return messages, len(found) > limit

    async def create_user(self, user_id: int, username: str, password_hash: str) -> bool:
        """False if the username is taken (decided by a lightweight transaction)."""
        rows = await self.db.execute(
            "INSERT INTO users_by_name (username, user_id) VALUES (?, ?) IF NOT EXISTS",
            (username, _signed(user_id)),
        )
        if not rows or not rows[0].applied:
            return False
        await self.db.execute(
            "INSERT INTO users (user_id, username, password_hash, created_at)"
            " VALUES (?, ?, ?, toTimestamp(now()))",
            (_signed(user_id), username, password_hash),
        )
        return True

    async def user_by_name(self, username: str) -> Any | None:
        rows = await self.db.execute(
            "SELECT user_id FROM users_by_name WHERE username = ?", (username,)
        )
        return await self.user_by_id(_unsigned(rows[0].user_id)) if rows else None

    async def user_by_id(self, user_id: int) -> Any | None:
        rows = await self.db.execute(
            "SELECT user_id, username, password_hash FROM users WHERE user_id = ?",
            (_signed(user_id),),
        )
        return rows[0] if rows else None


def _millis(value: datetime.datetime | None) -> int:
    # The driver returns naive datetimes that are UTC.
    return int(value.replace(tzinfo=datetime.UTC).timestamp() * 1000) if value else 0


def _signed(value: int) -> int:
    """Ids are unsigned 64-bit on the wire (fixed64), Cassandra bigint is signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
