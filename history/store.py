"""Cassandra access for history: messages, per-user chat state, chats, users.

Writes never read first. A batch of deliveries becomes:

* one upsert per message (from its primary copy) into ``messages_by_chat``, keyed by message
  id, plus the chat's bucket in ``chat_buckets`` the first time this process writes to it;
* one update per (recipient, chat) of the recipient's ``chats_by_user`` row: the newest
  message of the batch as one tuple cell, and (for the sender's own copies) the read
  watermark, each written with the message's own time as its write time. Cassandra keeps the
  cell with the newest write time, so the newest message wins whatever order the copies
  arrive in, and a replayed or duplicated copy writes the same value again.

Unread counts are not stored: the chat list derives them from the read watermark and
``messages_by_chat``, which holds each message once, so nothing can count twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cassandra.query import BoundStatement

from chatlib.cassandra import AsyncSession
from chatlib.ids import timestamp_ms
from history.buckets import bucket_at, bucket_of
from protos.chat.v1 import common_pb2, envelope_pb2

PREVIEW_CHARS = 120
#: Unread counts stop at this many (the chat list shows "this many or more").
UNREAD_CAP = 1000
#: Larger than any message id (41 bits of milliseconds shifted by 22 stay below 2**63), and
#: the largest Cassandra bigint.
MAX_ID = 2**63 - 1
#: Chats whose members or buckets a query process remembers.
CACHED_CHATS = 100_000
BUCKETS_SECONDS = 60.0
BUCKETS_RECHECK_SECONDS = 1.0
#: (chat, bucket) pairs this process remembers having indexed.
KNOWN_BUCKETS = 100_000

_INSERT_MESSAGE = (
    "INSERT INTO messages_by_chat (chat_id, bucket, message_id, sender_id, body,"
    " client_message_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_BUCKET = "INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)"
_NEWEST = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET last_message = ?, kind = ?"
    " WHERE user_id = ? AND chat_id = ?"
)
_NEWEST_UNKNOWN_KIND = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET last_message = ? WHERE user_id = ? AND chat_id = ?"
)
_READ = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET read_watermark = ?"
    " WHERE user_id = ? AND chat_id = ?"
)
# created_at is not read: a message's time is its id's (timestamp_ms), and decoding a
# timestamp column into a datetime for each of a page's rows costs more than the rest.
_PAGE = (
    "SELECT message_id, sender_id, body, client_message_id"
    " FROM messages_by_chat WHERE chat_id = ? AND bucket = ?"
)
_NEWER = _PAGE + " AND message_id > ? AND message_id < ? ORDER BY message_id ASC LIMIT ?"
_OLDER = _PAGE + " AND message_id < ? LIMIT ?"
_SENDERS_NEWER = (
    "SELECT message_id, sender_id FROM messages_by_chat WHERE chat_id = ? AND bucket = ?"
    " AND message_id > ? AND message_id < ? LIMIT ?"
)


@dataclass(frozen=True)
class ChatRow:
    chat_id: str
    kind: str
    member_ids: frozenset[int]


@dataclass(frozen=True)
class ChatState:
    """One row of a user's chat list."""

    chat_id: str
    kind: str
    member_ids: frozenset[int]
    last_message_id: int
    last_sender_id: int
    last_preview: str
    read_watermark: int


def write_time(message_id: int) -> int:
    """A message's time in microseconds, as the write time of the cells it sets.

    Ids of one millisecond keep their order through the sequence bits (up to 1,000 of them);
    the value stays comparable with the server-side write times of every other cell.
    """
    return timestamp_ms(message_id) * 1000 + (message_id & 0xFFF) % 1000


class HistoryStore:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db
        self._known_buckets: set[tuple[str, int]] = set()
        self._chats: OrderedDict[str, ChatRow] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[list[int], float]] = OrderedDict()

    async def persist(self, batch: Sequence[envelope_pb2.Delivery]) -> None:
        """Write a batch of deliveries (see the module docstring): idempotent, no reads."""
        statements: list[tuple[BoundStatement, int]] = []
        new_buckets: set[tuple[str, int]] = set()
        newest: dict[tuple[int, str], envelope_pb2.Delivery] = {}
        newest_own: dict[tuple[int, str], int] = {}
        bind = self.db.bind
        for delivery in batch:
            key = (delivery.recipient_id, delivery.chat_id)
            current = newest.get(key)
            if current is None or delivery.message_id > current.message_id:
                newest[key] = delivery
            if delivery.sender_id == delivery.recipient_id:
                newest_own[key] = max(newest_own.get(key, 0), delivery.message_id)
            if not delivery.primary:
                continue
            bucket = bucket_of(delivery.message_id)
            statements.append(
                (
                    bind(
                        _INSERT_MESSAGE,
                        (
                            delivery.chat_id,
                            bucket,
                            _signed(delivery.message_id),
                            _signed(delivery.sender_id),
                            delivery.body,
                            delivery.client_message_id,
                            delivery.created_at_ms,
                        ),
                    ),
                    len(delivery.body) * 4 + 100,
                )
            )
            pair = (delivery.chat_id, bucket)
            if pair not in self._known_buckets and pair not in new_buckets:
                new_buckets.add(pair)
                statements.append((bind(_INSERT_BUCKET, pair), 60))
        for (user, chat_id), delivery in newest.items():
            last = (
                _signed(delivery.message_id),
                _signed(delivery.sender_id),
                delivery.body[:PREVIEW_CHARS],
            )
            at = write_time(delivery.message_id)
            if delivery.kind:
                params: tuple[Any, ...] = (at, last, delivery.kind, _signed(user), chat_id)
                statements.append((bind(_NEWEST, params), PREVIEW_CHARS * 4 + 100))
            else:
                params = (at, last, _signed(user), chat_id)
                statements.append((bind(_NEWEST_UNKNOWN_KIND, params), PREVIEW_CHARS * 4 + 100))
        for (user, chat_id), message_id in newest_own.items():
            # Sending in a chat means having read it up to one's own message.
            params = (write_time(message_id), _signed(message_id), _signed(user), chat_id)
            statements.append((bind(_READ, params), 80))
        await self.db.write(statements)
        if len(self._known_buckets) + len(new_buckets) > KNOWN_BUCKETS:
            self._known_buckets.clear()
        self._known_buckets |= new_buckets

    async def chat(self, chat_id: str) -> ChatRow | None:
        """A chat and its members; direct chats, whose members never change, are remembered."""
        cached = self._chats.get(chat_id)
        if cached is not None:
            return cached
        rows = await self.db.execute(
            "SELECT chat_id, kind, member_ids FROM chats WHERE chat_id = ?", (chat_id,)
        )
        if not rows:
            return None
        row = rows[0]
        found = ChatRow(
            chat_id=row.chat_id,
            kind=row.kind,
            member_ids=frozenset(_unsigned(m) for m in row.member_ids or ()),
        )
        if found.kind == "direct":
            self._chats[chat_id] = found
            if len(self._chats) > CACHED_CHATS:
                self._chats.popitem(last=False)
        return found

    async def chats_of(self, user_id: int, limit: int) -> list[ChatState]:
        """The user's chats, the one with the newest message first (chats without a message
        last)."""
        rows = await self.db.execute(
            "SELECT chat_id, kind, member_ids, last_message, read_watermark FROM chats_by_user"
            " WHERE user_id = ?",
            (_signed(user_id),),
        )
        found = []
        for row in rows:
            message_id, sender_id, preview = row.last_message or (0, 0, "")
            found.append(
                ChatState(
                    chat_id=row.chat_id,
                    kind=row.kind or "direct",
                    member_ids=frozenset(_unsigned(m) for m in row.member_ids or ()),
                    last_message_id=_unsigned(message_id),
                    last_sender_id=_unsigned(sender_id),
                    last_preview=preview or "",
                    read_watermark=_unsigned(row.read_watermark or 0),
                )
            )
        found.sort(key=lambda c: (c.last_message_id, c.chat_id), reverse=True)
        return found[:limit]

    async def unread(self, chat: ChatState, user_id: int) -> int:
        """Messages of others in ``chat`` after the user's read watermark (up to UNREAD_CAP)."""
        if chat.last_message_id <= chat.read_watermark:
            return 0
        low = bucket_of(chat.read_watermark) if chat.read_watermark else None
        count = 0
        for bucket in await self.buckets(chat.chat_id):
            if low is not None and bucket < low:
                break
            upper = MAX_ID
            while count < UNREAD_CAP:
                rows = await self.db.execute(
                    _SENDERS_NEWER,
                    (chat.chat_id, bucket, _signed(chat.read_watermark), upper, UNREAD_CAP),
                )
                count += sum(1 for r in rows if _unsigned(r.sender_id) != user_id)
                if len(rows) < UNREAD_CAP:
                    break
                upper = rows[-1].message_id
            if count >= UNREAD_CAP:
                return UNREAD_CAP
        return count

    async def buckets(self, chat_id: str, *, newest: bool = False) -> list[int]:
        """The buckets holding the chat's messages, newest first.

        Remembered for BUCKETS_SECONDS (a chat gains a bucket every ten days at most); when
        the newest page is asked for and the newest known bucket is not the current one, it
        is asked again, at most once every BUCKETS_RECHECK_SECONDS.
        """
        now = time.monotonic()
        known = self._buckets.get(chat_id)
        if known is not None:
            buckets, fetched = known
            age = now - fetched
            stale = newest and (not buckets or buckets[0] < bucket_at(int(time.time() * 1000)))
            if age < BUCKETS_SECONDS and not (stale and age >= BUCKETS_RECHECK_SECONDS):
                return buckets
        rows = await self.db.execute(
            "SELECT bucket FROM chat_buckets WHERE chat_id = ?", (chat_id,)
        )
        buckets = [row.bucket for row in rows]
        self._buckets[chat_id] = (buckets, now)
        if len(self._buckets) > CACHED_CHATS:
            self._buckets.popitem(last=False)
        return buckets

    async def page(
        self, chat_id: str, *, before_id: int, after_id: int, limit: int
    ) -> tuple[list[common_pb2.Message], bool]:
        """Up to ``limit`` messages by id cursor, over the chat's non-empty buckets only; and
        whether more exist. With ``after_id``, the oldest first after it (and before
        ``before_id`` if that is given too); else the newest first before ``before_id``."""
        wanted = limit + 1
        found: list[Any] = []
        if after_id >= MAX_ID:
            return [], False  # no id is that large: nothing is newer
        before_id = min(before_id, MAX_ID)
        buckets = await self.buckets(chat_id, newest=not before_id and not after_id)
        if after_id:
            start = bucket_of(after_id)
            end = bucket_of(before_id) if before_id else None
            bound = before_id or MAX_ID
            for bucket in reversed([b for b in buckets if b >= start]):
                if end is not None and bucket > end:
                    break
                found += await self.db.execute(
                    _NEWER, (chat_id, bucket, after_id, bound, wanted - len(found)), tuples=True
                )
                if len(found) >= wanted:
                    break
        else:
            end = bucket_of(before_id) if before_id else None
            bound = before_id or MAX_ID
            for bucket in buckets:
                if end is not None and bucket > end:
                    continue
                found += await self.db.execute(
                    _OLDER, (chat_id, bucket, bound, wanted - len(found)), tuples=True
                )
                if len(found) >= wanted:
                    break
        messages = [
            common_pb2.Message(
                message_id=message_id,
                chat_id=chat_id,
                sender_id=_unsigned(sender_id),
                body=body,
                client_message_id=client_message_id,
                created_at_ms=timestamp_ms(message_id),
            )
            for message_id, sender_id, body, client_message_id in found[:limit]
        ]
        return messages, len(found) > limit

    async def unread_counts(self, chats: list[ChatState], user_id: int) -> list[int]:
        return list(await asyncio.gather(*(self.unread(chat, user_id) for chat in chats)))

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


def _signed(value: int) -> int:
    """Ids are unsigned 64-bit on the wire (fixed64), Cassandra bigint is signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
