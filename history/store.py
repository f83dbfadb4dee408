"""Cassandra access for history: messages, per-user chat state, chats, users.

Writes never read first. A batch of deliveries becomes:

* one upsert per message (from its primary copy) into ``messages_by_chat``, keyed by message
  id and written at the message's own time (so what amends it later always wins), plus the
  chat's bucket in ``chat_buckets`` the first time this process writes to it;
* for a direct chat, one update per (recipient, chat) of the recipient's ``chats_by_user``
  row: the newest message of the batch as one tuple cell, and (for the sender's own copies)
  the read watermark, each written with the message's own time as its write time. Cassandra
  keeps the cell with the newest write time, so the newest message wins whatever order the
  copies arrive in, and a replayed or duplicated copy writes the same value again;
* for a group, the same cells once per group in ``group_last`` (newest entry, name), which
  each member's chat list reads beside the member's own row; a member's row is written only
  by the changes that add or remove them (their window) and by their own sends and marks
  (their read watermark). A message to a group of any size is a constant number of writes.

Unread counts are not stored: the chat list derives them from the read watermark and
``messages_by_chat``, which holds each message once, so nothing can count twice.

Edits, deletions and reactions (``Amendment`` entries) are not rows of their own: their
primary copy updates the row of the message they amend, each cell written with the entry's
time, so they apply right in any order (even before the message itself). A deletion writes
its cells at ``FOREVER``: no edit or reaction can bring anything back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from cassandra.query import UNSET_VALUE, BoundStatement

from chatlib import deliveries
from chatlib.buckets import bucket_at, bucket_of
from chatlib.cassandra import AsyncSession
from chatlib.chat_ids import direct_members
from chatlib.errors import NotFound, PermissionDenied
from chatlib.ids import signed, timestamp_ms, unsigned, write_time
from history.search_terms import MAX_QUERY_WORDS, words
from protos.chat.v1 import common_pb2, envelope_pb2

OPENED = common_pb2.ChatChange.OPENED
CREATED, ADDED = common_pb2.ChatChange.CREATED, common_pb2.ChatChange.ADDED
REMOVED, LEFT = common_pb2.ChatChange.REMOVED, common_pb2.ChatChange.LEFT
PREVIEW_CHARS = 120
#: Unread counts stop at this many (the chat list shows "this many or more").
UNREAD_CAP = 1000
#: Larger than any message id (41 bits of milliseconds shifted by 22 stay below 2**63), and
#: the largest Cassandra bigint.
MAX_ID = 2**63 - 1
#: Buckets a search asks at once (after the newest alone, then 2, then 4).
SEARCH_WAVE = 8
#: Chats whose members or buckets a query process remembers.
CACHED_CHATS = 100_000
BUCKETS_SECONDS = 60.0
BUCKETS_RECHECK_SECONDS = 1.0
#: (chat, bucket) pairs this process remembers having indexed.
KNOWN_BUCKETS = 100_000

# Written at the message's own time, like every other cell: an edit (written at its later
# entry's time) then wins whenever the writer gets to the message, even replaying it after a
# crash, or rebuilding the keyspace.
# ``terms``: the body's words (history/search_terms.py), which the search index holds; written
# with the body, at its write time, so they change and go with it.
_INSERT_MESSAGE = (
    "INSERT INTO messages_by_chat (chat_id, bucket, message_id, sender_id, body,"
    " client_message_id, created_at, terms, attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " USING TIMESTAMP ?"
)
_INSERT_CHANGE = (
    "INSERT INTO messages_by_chat (chat_id, bucket, message_id, sender_id, body,"
    " client_message_id, created_at, change) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
)
_INSERT_BUCKET = "INSERT INTO chat_buckets (chat_id, bucket) VALUES (?, ?)"
_NEWEST = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET last_message = ?, kind = ?"
    " WHERE user_id = ? AND chat_id = ?"
)
_NEWEST_UNKNOWN_KIND = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET last_message = ? WHERE user_id = ? AND chat_id = ?"
)
_KIND = "UPDATE chats_by_user USING TIMESTAMP ? SET kind = ? WHERE user_id = ? AND chat_id = ?"
_NAME = "UPDATE chats_by_user USING TIMESTAMP ? SET name = ? WHERE user_id = ? AND chat_id = ?"
_JOINED = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET visible_from = ?, visible_until = null"
    " WHERE user_id = ? AND chat_id = ?"
)
_LEFT = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET visible_until = ? WHERE user_id = ? AND chat_id = ?"
)
_READ_MARK = (
    "UPDATE read_marks USING TIMESTAMP ? SET read_up_to = ? WHERE chat_id = ? AND user_id = ?"
)
_DELIVERED_MARK = (
    "UPDATE read_marks USING TIMESTAMP ? SET delivered_up_to = ? WHERE chat_id = ? AND user_id = ?"
)
_READERS = "SELECT user_id, read_up_to, delivered_up_to FROM read_marks WHERE chat_id = ?"
#: Write time of a deletion's cells: above any entry's, so nothing written later revives them.
FOREVER = 2**62
_EDIT = (
    "UPDATE messages_by_chat USING TIMESTAMP ? SET body = ?, terms = ?, edited_at = ?"
    " WHERE chat_id = ? AND bucket = ? AND message_id = ?"
)
# The literal is FOREVER (2**62).
_DELETE = (
    "UPDATE messages_by_chat USING TIMESTAMP 4611686018427387904"
    " SET body = null, terms = null, attachments = null, reacted = null, deleted = true"
    " WHERE chat_id = ? AND bucket = ? AND message_id = ?"
)
_REACT = (
    "UPDATE messages_by_chat USING TIMESTAMP ? SET reacted[?] = ?"
    " WHERE chat_id = ? AND bucket = ? AND message_id = ?"
)
_UNREACT = (
    "DELETE reacted[?] FROM messages_by_chat USING TIMESTAMP ?"
    " WHERE chat_id = ? AND bucket = ? AND message_id = ?"
)
_PREVIEW = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET last_message = ? WHERE user_id = ? AND chat_id = ?"
)
_GROUP_LAST = "UPDATE group_last USING TIMESTAMP ? SET last_message = ? WHERE chat_id = ?"
_GROUP_NAME = "UPDATE group_last USING TIMESTAMP ? SET name = ? WHERE chat_id = ?"
_GROUP_LASTS = "SELECT chat_id, last_message, name FROM group_last WHERE chat_id IN ?"
EDITED, DELETED = common_pb2.Amendment.EDITED, common_pb2.Amendment.DELETED
REACTION_ADDED = common_pb2.Amendment.REACTION_ADDED
_READ = (
    "UPDATE chats_by_user USING TIMESTAMP ? SET read_watermark = ?"
    " WHERE user_id = ? AND chat_id = ?"
)
# created_at is not read: a message's time is its id's (timestamp_ms), and decoding a
# timestamp column into a datetime for each of a page's rows costs more than the rest.
_PAGE = (
    "SELECT message_id, sender_id, body, client_message_id, change, edited_at, deleted, reacted,"
    " attachments FROM messages_by_chat WHERE chat_id = ? AND bucket = ?"
)
_NEWER = _PAGE + " AND message_id > ? AND message_id < ? ORDER BY message_id ASC LIMIT ?"
_OLDER = _PAGE + " AND message_id < ? LIMIT ?"
_OLDER_ABOVE = _PAGE + " AND message_id > ? AND message_id < ? LIMIT ?"
# One statement per number of words (1..MAX_QUERY_WORDS): every word must be in the message.
_SEARCH = _PAGE + " AND message_id > ? AND message_id < ?{words} LIMIT ?"
_ENTRY = (
    "SELECT sender_id, deleted, change FROM messages_by_chat"
    " WHERE chat_id = ? AND bucket = ? AND message_id = ?"
)
_WINDOW = "SELECT since_id, until_id, version FROM group_members WHERE chat_id = ? AND user_id = ?"
_GROUP_EXISTS = "SELECT version FROM group_members WHERE chat_id = ? LIMIT 1"
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
    #: A group's name, and the part of its log the user may read: from the change that
    #: (last) added them, up to the one that removed them (0: not removed).
    name: str = ""
    visible_from: int = 0
    visible_until: int = 0


def _messages(chat_id: str, rows: Sequence[Any], viewer: int) -> list[common_pb2.Message]:
    """Rows of ``_PAGE``'s columns as the API's messages."""
    messages = []
    for row in rows:
        message_id, sender_id, body, client_message_id, change, edited, deleted, reacted, files = (
            row
        )
        if sender_id is None:
            continue  # amended before the message itself was written: not here yet
        messages.append(
            common_pb2.Message(
                message_id=message_id,
                chat_id=chat_id,
                sender_id=unsigned(sender_id),
                body=body or "",
                client_message_id=client_message_id,
                created_at_ms=timestamp_ms(message_id),
                change=common_pb2.ChatChange.FromString(change) if change else None,
                edited_at_ms=int(edited.replace(tzinfo=UTC).timestamp() * 1000)
                if edited and not deleted
                else 0,
                deleted=bool(deleted),
                reactions=reaction_counts(reacted, viewer) if reacted else (),
                attachments=[common_pb2.Attachment.FromString(f) for f in files or ()],
            )
        )
    return messages


def reaction_counts(reacted: dict[str, int], viewer: int) -> list[common_pb2.Reaction]:
    """A message's reactions from its cells ("<emoji> <user id>"), the most used first."""
    counts: dict[str, common_pb2.Reaction] = {}
    for cell in reacted:
        emoji, _, user = cell.rpartition(" ")
        reaction = counts.get(emoji)
        if reaction is None:
            reaction = counts[emoji] = common_pb2.Reaction(emoji=emoji)
        reaction.count += 1
        if user == str(viewer):
            reaction.mine = True
    return sorted(counts.values(), key=lambda r: (-r.count, r.emoji))


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
        newest_read: dict[tuple[int, str], int] = {}
        newest_delivered: dict[tuple[int, str], int] = {}
        newest_group: dict[str, envelope_pb2.Delivery] = {}
        bind = self.db.bind
        for delivery in batch:
            grouped = bool(delivery.recipient_ids)
            own = (delivery.sender_id, delivery.chat_id)
            # The sender's own copy: in a group record, the primary one lists the sender.
            sender_copy = (
                delivery.primary if grouped else delivery.sender_id == delivery.recipient_id
            )
            if deliveries.is_receipt(delivery):
                # A read mark moves the reader's watermark and their row of the chat's read
                # marks (written at the time of the message read up to: never back); a read
                # mark is a delivery mark too. The copies telling other members are for their
                # streams only.
                if sender_copy:
                    if delivery.read:
                        newest_own[own] = max(newest_own.get(own, 0), delivery.message_id)
                        newest_read[own] = max(newest_read.get(own, 0), delivery.message_id)
                    newest_delivered[own] = max(newest_delivered.get(own, 0), delivery.message_id)
                continue
            if delivery.HasField("amendment"):
                statements += self._amended(delivery)
                continue
            if grouped:
                # A group's newest entry and name are one row for the group (``group_last``),
                # read beside each member's row; only the members a change adds or removes
                # (their window, and the end of a former member's list) have their rows
                # written.
                if delivery.primary:
                    current = newest_group.get(delivery.chat_id)
                    if current is None or delivery.message_id > current.message_id:
                        newest_group[delivery.chat_id] = delivery
                    if delivery.HasField("change"):
                        named = (write_time(delivery.message_id), delivery.change.name)
                        statements.append((bind(_GROUP_NAME, (*named, delivery.chat_id)), 100))
                if delivery.HasField("change"):
                    subjects = set(delivery.change.user_ids)
                    targets = [r for r in delivery.recipient_ids if r in subjects]
                else:
                    targets = []
            else:
                targets = [delivery.recipient_id]
            if delivery.HasField("change"):
                for recipient in targets:
                    statements += self._chat_changed(delivery, recipient)
                if delivery.change.action == OPENED:
                    continue  # only the chat lists learn of it
            for recipient in targets:
                key = (recipient, delivery.chat_id)
                current = newest.get(key)
                if current is None or delivery.message_id > current.message_id:
                    newest[key] = delivery
            if sender_copy:
                newest_own[own] = max(newest_own.get(own, 0), delivery.message_id)
            if not delivery.primary:
                continue
            bucket = bucket_of(delivery.message_id)
            row = [
                delivery.chat_id,
                bucket,
                signed(delivery.message_id),
                signed(delivery.sender_id),
                delivery.body,
                delivery.client_message_id,
                delivery.created_at_ms,
            ]
            if delivery.HasField("change"):
                row.append(delivery.change.SerializeToString(deterministic=True))
                cql = _INSERT_CHANGE
            else:
                row.append(words(delivery.body) or None)
                row.append([a.SerializeToString() for a in delivery.attachments] or None)
                cql = _INSERT_MESSAGE
            row.append(write_time(delivery.message_id))
            size = len(delivery.body) * 8 + 100 + 400 * len(delivery.attachments)
            statements.append((bind(cql, row), size))
            pair = (delivery.chat_id, bucket)
            if pair not in self._known_buckets and pair not in new_buckets:
                new_buckets.add(pair)
                statements.append((bind(_INSERT_BUCKET, pair), 60))
        for (user, chat_id), delivery in newest.items():
            last = (
                signed(delivery.message_id),
                signed(delivery.sender_id),
                delivery.body[:PREVIEW_CHARS],
            )
            at = write_time(delivery.message_id)
            if delivery.kind:
                params: tuple[Any, ...] = (at, last, delivery.kind, signed(user), chat_id)
                statements.append((bind(_NEWEST, params), PREVIEW_CHARS * 4 + 100))
            else:
                params = (at, last, signed(user), chat_id)
                statements.append((bind(_NEWEST_UNKNOWN_KIND, params), PREVIEW_CHARS * 4 + 100))
        for chat_id, delivery in newest_group.items():
            last = (
                signed(delivery.message_id),
                signed(delivery.sender_id),
                delivery.body[:PREVIEW_CHARS],
            )
            params = (write_time(delivery.message_id), last, chat_id)
            statements.append((bind(_GROUP_LAST, params), PREVIEW_CHARS * 4 + 100))
        for (user, chat_id), message_id in newest_own.items():
            # Sending in a chat means having read it up to one's own message.
            params = (write_time(message_id), signed(message_id), signed(user), chat_id)
            statements.append((bind(_READ, params), 80))
        for (user, chat_id), message_id in newest_read.items():
            params = (write_time(message_id), signed(message_id), chat_id, signed(user))
            statements.append((bind(_READ_MARK, params), 80))
        for (user, chat_id), message_id in newest_delivered.items():
            params = (write_time(message_id), signed(message_id), chat_id, signed(user))
            statements.append((bind(_DELIVERED_MARK, params), 80))
        await self.db.write(statements)
        if len(self._known_buckets) + len(new_buckets) > KNOWN_BUCKETS:
            self._known_buckets.clear()
        self._known_buckets |= new_buckets

    def _chat_changed(
        self, delivery: envelope_pb2.Delivery, recipient: int
    ) -> list[tuple[BoundStatement, int]]:
        """A change's effect on a recipient's chat-list row, written at the change's time:
        the kind (an opened direct chat), a group's name, and the recipient's window."""
        change = delivery.change
        at = write_time(delivery.message_id)
        where = (signed(recipient), delivery.chat_id)
        bind = self.db.bind
        if change.action == OPENED:
            return [(bind(_KIND, (at, delivery.kind or "direct", *where)), 60)]
        found = [(bind(_NAME, (at, change.name, *where)), 100 + len(change.name) * 4)]
        if recipient in change.user_ids:
            if change.action in (CREATED, ADDED):
                found.append((bind(_JOINED, (at, signed(delivery.message_id), *where)), 60))
            elif change.action in (REMOVED, LEFT):
                found.append((bind(_LEFT, (at, signed(delivery.message_id), *where)), 60))
        return found

    def _amended(self, delivery: envelope_pb2.Delivery) -> list[tuple[BoundStatement, int]]:
        """An edit, deletion or reaction: the primary copy updates the message's row, at the
        entry's time; every copy of an edit or deletion also rewrites the recipient's chat-list
        preview if the message is still the chat's newest there (it is written just after the
        message's own time, so any newer message wins over it)."""
        amendment = delivery.amendment
        target = amendment.message_id
        where = (delivery.chat_id, bucket_of(target), signed(target))
        at = write_time(delivery.message_id)
        bind = self.db.bind
        found: list[tuple[BoundStatement, int]] = []
        params: tuple[Any, ...]
        if amendment.action in (EDITED, DELETED):
            # Deleted after edited: +2 beats the edit's +1 (equal times would compare values).
            text, later = (delivery.body, 1) if amendment.action == EDITED else ("", 2)
            last = (signed(target), signed(amendment.message_sender_id), text[:PREVIEW_CHARS])
            preview_at = write_time(target) + later
            if delivery.recipient_ids:
                # A group's preview is its one row, rewritten from the primary record.
                if delivery.primary:
                    params = (preview_at, last, delivery.chat_id)
                    found.append((bind(_GROUP_LAST, params), PREVIEW_CHARS * 4 + 100))
            else:
                params = (preview_at, last, signed(delivery.recipient_id), delivery.chat_id)
                found.append((bind(_PREVIEW, params), PREVIEW_CHARS * 4 + 100))
        if not delivery.primary:
            return found
        if amendment.action == EDITED:
            body = delivery.body
            params = (at, body, words(body) or None, delivery.created_at_ms, *where)
            found.append((bind(_EDIT, params), len(delivery.body) * 8 + 100))
        elif amendment.action == DELETED:
            found.append((bind(_DELETE, where), 80))
        else:
            cell = f"{amendment.emoji} {delivery.sender_id}"
            if amendment.action == REACTION_ADDED:
                params = (at, cell, signed(delivery.message_id), *where)
                found.append((bind(_REACT, params), 120))
            else:
                found.append((bind(_UNREACT, (cell, at, *where)), 120))
        return found

    async def record_opened(self, chat_id: str, opened_id: int) -> None:
        """Both members' chat-list rows of a direct chat just opened, written as the writer
        writes them from the chat's OPENED record (same values, same write time)."""
        at = write_time(opened_id)
        await self.db.write(
            [
                (self.db.bind(_KIND, (at, "direct", signed(member), chat_id)), 60)
                for member in direct_members(chat_id)
            ]
        )

    async def readers(self, chat_id: str, message_id: int) -> list[tuple[int, int, int]]:
        """(user, read up to, received up to) of everyone whose devices received the chat up
        to ``message_id`` (those who read it too among them), by user id."""
        rows = await self.db.execute(_READERS, (chat_id,), tuples=True)
        found = []
        for user, read, received in rows:
            read = unsigned(read or 0)
            received = max(read, unsigned(received or 0))
            if received >= message_id:
                found.append((unsigned(user), read, received))
        return sorted(found)

    async def group_window(self, chat_id: str, user_id: int) -> tuple[int, int]:
        """The part of a group's log the user may read: (from, until) change ids, until 0
        while they are a member. NotFound / PermissionDenied otherwise."""
        rows = await self.db.execute(_WINDOW, (chat_id, signed(user_id)))
        if not rows or rows[0].since_id is None:
            if not await self.db.execute(_GROUP_EXISTS, (chat_id,)):
                raise NotFound(f"chat {chat_id!r} does not exist")
            raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        row = rows[0]
        return unsigned(row.since_id), unsigned(row.until_id) if row.until_id else 0

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
            member_ids=frozenset(unsigned(m) for m in row.member_ids or ()),
        )
        if found.kind == "direct":
            self._chats[chat_id] = found
            if len(self._chats) > CACHED_CHATS:
                self._chats.popitem(last=False)
        return found

    async def chats_of(
        self, user_id: int, limit: int, after: tuple[int, str] | None = None
    ) -> tuple[list[ChatState], bool]:
        """Up to ``limit`` of the user's chats, the one with the newest message first (chats
        without a message last), after the (last message id, chat id) ``after`` in that
        order; and whether more follow. (A user's chats are one partition: it is read whole
        and ordered here, so every page is right whatever the limit.)"""
        rows = await self.db.execute(
            "SELECT chat_id, kind, last_message, read_watermark, name, visible_from,"
            " visible_until FROM chats_by_user WHERE user_id = ?",
            (signed(user_id),),
        )
        found = []
        for row in rows:
            message_id, sender_id, preview = row.last_message or (0, 0, "")
            found.append(
                ChatState(
                    chat_id=row.chat_id,
                    kind=row.kind or "",
                    member_ids=direct_members(row.chat_id),
                    last_message_id=unsigned(message_id),
                    last_sender_id=unsigned(sender_id),
                    last_preview=preview or "",
                    read_watermark=unsigned(row.read_watermark or 0),
                    name=row.name or "",
                    visible_from=unsigned(row.visible_from or 0),
                    visible_until=unsigned(row.visible_until or 0),
                )
            )
        found = await self._with_group_last(found)
        found.sort(key=lambda c: (c.last_message_id, c.chat_id), reverse=True)
        if after is not None:
            found = [c for c in found if (c.last_message_id, c.chat_id) < after]
        return found[:limit], len(found) > limit

    async def _with_group_last(self, chats: list[ChatState]) -> list[ChatState]:
        """The chats with each group's newest entry and name (``group_last``) where the
        member's own row is older: a group's messages and renames write that one row, not the
        members'. A former member's row ends at their removal, which it holds already."""
        wanted = [c.chat_id for c in chats if c.kind == "group" and not c.visible_until]
        if not wanted:
            return chats
        reads = [
            self.db.execute(_GROUP_LASTS, (wanted[start : start + 100],), tuples=True)
            for start in range(0, len(wanted), 100)
        ]
        newest: dict[str, tuple[int, int, str]] = {}
        names: dict[str, str] = {}
        for rows in await asyncio.gather(*reads):
            for chat_id, last, name in rows:
                if last is not None:
                    newest[chat_id] = (unsigned(last[0]), unsigned(last[1]), last[2] or "")
                if name:
                    names[chat_id] = name
        merged = []
        for chat in chats:
            last = newest.get(chat.chat_id)
            if last is not None and last[0] > chat.last_message_id:
                chat = dataclasses.replace(
                    chat, last_message_id=last[0], last_sender_id=last[1], last_preview=last[2]
                )
            name = names.get(chat.chat_id)
            if name and name != chat.name:
                chat = dataclasses.replace(chat, name=name)
            merged.append(chat)
        return merged

    async def unread(self, chat: ChatState, user_id: int) -> int:
        """Entries by others in ``chat`` after the user's read watermark, within what they may
        read (up to the newest they were given: a former member's stops at their removal),
        up to UNREAD_CAP."""
        floor = max(chat.read_watermark, chat.visible_from - 1 if chat.visible_from else 0)
        if chat.last_message_id <= floor:
            return 0
        low = bucket_of(floor) if floor else None
        count = 0
        newest = bucket_of(chat.last_message_id)
        for bucket in await self.buckets(chat.chat_id, holding=newest):
            if low is not None and bucket < low:
                break
            upper = chat.last_message_id + 1
            while count < UNREAD_CAP:
                rows = await self.db.execute(
                    _SENDERS_NEWER,
                    (chat.chat_id, bucket, signed(floor), upper, UNREAD_CAP),
                )
                # (A row amended before its message arrived has no sender yet.)
                count += sum(
                    1 for r in rows if r.sender_id is not None and unsigned(r.sender_id) != user_id
                )
                if len(rows) < UNREAD_CAP:
                    break
                upper = rows[-1].message_id
            if count >= UNREAD_CAP:
                return UNREAD_CAP
        return count

    async def buckets(
        self, chat_id: str, *, newest: bool = False, holding: int | None = None
    ) -> list[int]:
        """The buckets holding the chat's messages, newest first.

        Remembered for BUCKETS_SECONDS (a chat gains a bucket every ten days at most); when a
        page without a ``before`` bound (the newest page, or what is newer than a cursor) is
        asked for and the newest known bucket is not the current one, it is asked again, at
        most once every BUCKETS_RECHECK_SECONDS. Given ``holding``, a bucket known to hold a
        message (the chat list names the chat's newest), a remembered list without it is asked
        again every time: it was read before that message's row was written. A message's
        chat-list rows and its own row are written by separate batches, by two history
        writers when the sender's and the recipient's partitions belong to different ones
        (seconds apart when one of them is down); an unread count over such a list would miss
        every message of the bucket until it was read again.
        """
        now = time.monotonic()
        known = self._buckets.get(chat_id)
        if known is not None:
            buckets, fetched = known
            age = now - fetched
            stale = newest and (not buckets or buckets[0] < bucket_at(int(time.time() * 1000)))
            lacking = holding is not None and (not buckets or buckets[0] < holding)
            fresh = age < BUCKETS_SECONDS and not (stale and age >= BUCKETS_RECHECK_SECONDS)
            if fresh and not lacking:
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
        self,
        chat_id: str,
        *,
        before_id: int,
        after_id: int,
        limit: int,
        window: tuple[int, int] = (0, 0),
        viewer: int = 0,
    ) -> tuple[list[common_pb2.Message], bool]:
        """Up to ``limit`` messages by id cursor, over the chat's non-empty buckets only; and
        whether more exist. With ``after_id``, the oldest first after it (and before
        ``before_id`` if that is given too); else the newest first before ``before_id``.
        Only ids within ``window`` (from, until; 0 for no bound), both ends included."""
        wanted = limit + 1
        found: list[Any] = []
        since, until = window
        if until:
            before_id = min(before_id, until + 1) if before_id else until + 1
        floor = since - 1 if since else 0
        if after_id:
            after_id = max(after_id, floor)
        if after_id >= MAX_ID:
            return [], False  # no id is that large: nothing is newer
        before_id = min(before_id, MAX_ID)
        buckets = await self.buckets(chat_id, newest=not before_id)
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
                if floor and bucket < bucket_of(floor):
                    break
                if floor:
                    params: tuple[Any, ...] = (chat_id, bucket, floor, bound, wanted - len(found))
                    found += await self.db.execute(_OLDER_ABOVE, params, tuples=True)
                else:
                    params = (chat_id, bucket, bound, wanted - len(found))
                    found += await self.db.execute(_OLDER, params, tuples=True)
                if len(found) >= wanted:
                    break
        return _messages(chat_id, found[:limit], viewer), len(found) > limit

    async def search(
        self,
        chat_id: str,
        query: Sequence[str],
        *,
        before_id: int,
        limit: int,
        window: tuple[int, int] = (0, 0),
        viewer: int = 0,
    ) -> tuple[list[common_pb2.Message], bool]:
        """Up to ``limit`` messages holding every word of ``query`` (``search_terms.words``),
        newest first, older than ``before_id`` (0: from the newest), within ``window``; and
        whether more match. One indexed query per non-empty bucket (each within its
        partition), newest bucket first, until the page is full: the newest bucket alone, then
        waves of 2, 4 and at most SEARCH_WAVE buckets at once, so a rare word in a long chat
        costs a few round trips rather than one per bucket."""
        if not query or len(query) > MAX_QUERY_WORDS:
            raise ValueError(f"a search has 1 to {MAX_QUERY_WORDS} words, not {len(query)}")
        since, until = window
        bound = min(before_id or MAX_ID, until + 1 if until else MAX_ID, MAX_ID)
        floor = since - 1 if since else 0
        cql = _SEARCH.format(words=" AND terms CONTAINS ?" * len(query))
        wanted = limit + 1
        found: list[Any] = []
        low, high = bucket_of(floor), bucket_of(bound)
        buckets = [b for b in await self.buckets(chat_id, newest=not before_id) if low <= b <= high]
        done, wave = 0, 1
        while done < len(buckets) and len(found) < wanted:
            asked = (wanted - len(found),)
            pages = await asyncio.gather(
                *(
                    self.db.execute(cql, (chat_id, b, floor, bound, *query, *asked), tuples=True)
                    for b in buckets[done : done + wave]
                )
            )
            for rows in pages:  # newest bucket first, as asked
                found += rows
            done += wave
            wave = min(wave * 2, SEARCH_WAVE)
        return _messages(chat_id, found[:limit], viewer), len(found) > limit

    async def unread_counts(self, chats: list[ChatState], user_id: int) -> list[int]:
        return list(await asyncio.gather(*(self.unread(chat, user_id) for chat in chats)))

    async def message(self, chat_id: str, message_id: int) -> common_pb2.Message | None:
        """An entry of the chat as stored now (sender, deletion, change), or None if the chat
        holds none with that id (a row that only amendments wrote is none either)."""
        if message_id >= 2**63:
            return None
        rows = await self.db.execute(
            _ENTRY, (chat_id, bucket_of(message_id), signed(message_id)), tuples=True
        )
        if not rows or rows[0][0] is None:
            return None
        sender_id, deleted, change = rows[0]
        return common_pb2.Message(
            message_id=message_id,
            chat_id=chat_id,
            sender_id=unsigned(sender_id),
            created_at_ms=timestamp_ms(message_id),
            deleted=bool(deleted),
            change=common_pb2.ChatChange.FromString(change) if change else None,
        )

    async def memberships(self, user_id: int) -> list[tuple[str, str, bool]]:
        """(chat id, kind, left) of every chat in the user's chat list."""
        rows = await self.db.execute(
            "SELECT chat_id, kind, visible_until FROM chats_by_user WHERE user_id = ?",
            (signed(user_id),),
            tuples=True,
        )
        return [(chat_id, kind or "", bool(until)) for chat_id, kind, until in rows]

    async def usernames(self, user_ids: Sequence[int]) -> dict[int, tuple[str, str, int]]:
        """(username, display name, avatar id or 0) of those of ``user_ids`` that exist."""
        wanted = sorted({u for u in user_ids if 0 < u < 2**63})
        found: dict[int, tuple[str, str, int]] = {}
        for start in range(0, len(wanted), 100):
            rows = await self.db.execute(
                "SELECT user_id, username, display_name, avatar_id FROM users WHERE user_id IN ?",
                ([signed(u) for u in wanted[start : start + 100]],),
                tuples=True,
            )
            found.update(
                (unsigned(user_id), (username, shown or "", unsigned(avatar or 0)))
                for user_id, username, shown, avatar in rows
                if username is not None
            )
        return found

    async def reserve_name(self, username: str, user_id: int) -> bool:
        """False if the username is taken (decided by a lightweight transaction)."""
        rows = await self.db.execute(
            "INSERT INTO users_by_name (username, user_id) VALUES (?, ?) IF NOT EXISTS",
            (username, signed(user_id)),
        )
        return bool(rows and rows[0].applied)

    async def release_name(self, username: str, user_id: int) -> None:
        """Give back a name reserved for a user who was never announced."""
        await self.db.execute(
            "DELETE FROM users_by_name WHERE username = ? IF user_id = ?",
            (username, signed(user_id)),
        )

    async def insert_user(
        self, record: envelope_pb2.UserRecord, *, with_name: bool, registering: bool = False
    ) -> None:
        """The user's row (and, replaying the log into a new keyspace, their name's). A
        registration leaves the profile's cells unwritten (no null to store); a change or a
        replay writes them, a cleared display name or avatar as null."""
        cleared = UNSET_VALUE if registering else None
        shown: Any = record.display_name or cleared
        avatar: Any = signed(record.avatar_id) if record.avatar_id else cleared
        statements = [
            (
                self.db.bind(
                    "INSERT INTO users (user_id, username, password_hash, created_at,"
                    " display_name, avatar_id) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        signed(record.user_id),
                        record.username,
                        record.password_hash,
                        record.created_at_ms,
                        shown,
                        avatar,
                    ),
                ),
                200,
            )
        ]
        if with_name:
            statements.append(
                (
                    self.db.bind(
                        "INSERT INTO users_by_name (username, user_id) VALUES (?, ?)",
                        (record.username, signed(record.user_id)),
                    ),
                    100,
                )
            )
        await self.db.write(statements)

    async def user_by_name(self, username: str) -> Any | None:
        rows = await self.db.execute(
            "SELECT user_id FROM users_by_name WHERE username = ?", (username,)
        )
        return await self.user_by_id(unsigned(rows[0].user_id)) if rows else None

    async def user_by_id(self, user_id: int) -> Any | None:
        rows = await self.db.execute(
            "SELECT user_id, username, password_hash, display_name, avatar_id, created_at"
            " FROM users WHERE user_id = ?",
            (signed(user_id),),
        )
        return rows[0] if rows else None
