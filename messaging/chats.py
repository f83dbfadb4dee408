"""Chats and membership: who may send to and read a chat. Messaging owns these decisions."""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from chatlib.cassandra import AsyncSession
from chatlib.errors import InvalidArgument, NotFound, PermissionDenied

DIRECT = re.compile(r"d:[0-9]{1,20}:[0-9]{1,20}")
GROUP = re.compile(r"g:[0-9]{1,20}")
CACHE_SIZE = 100_000


def direct_chat_id(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"d:{low}:{high}"


def check_chat_id(chat_id: str) -> None:
    if not chat_id:
        raise InvalidArgument("chat_id is required")
    if not (DIRECT.fullmatch(chat_id) or GROUP.fullmatch(chat_id)):
        raise InvalidArgument(f"chat_id {chat_id[:64]!r} is not a chat id")


@dataclass(frozen=True)
class Chat:
    chat_id: str
    kind: str
    members: frozenset[int]


class ChatDirectory:
    """Membership from Cassandra's ``chats`` table, cached: direct chats never change members."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db
        self._chats: OrderedDict[str, Chat] = OrderedDict()

    async def chat(self, chat_id: str) -> Chat:
        cached = self._chats.get(chat_id)
        if cached is not None:
            self._chats.move_to_end(chat_id)
            return cached
        rows = await self._db.execute(
            "SELECT kind, member_ids FROM chats WHERE chat_id = ?", (chat_id,)
        )
        if not rows:
            raise NotFound(f"chat {chat_id!r} does not exist")
        found = Chat(chat_id, rows[0].kind or "direct", frozenset(rows[0].member_ids or ()))
        self._chats[chat_id] = found
        if len(self._chats) > CACHE_SIZE:
            self._chats.popitem(last=False)
        return found

    async def check_member(self, chat_id: str, user_id: int) -> Chat:
        found = await self.chat(chat_id)
        if user_id not in found.members:
            raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        return found

    async def open_direct(self, user_id: int, peer_id: int) -> str:
        if peer_id == user_id:
            raise InvalidArgument("peer_id must be another user")
        if not peer_id:
            raise InvalidArgument("peer_id is required")
        # User ids are Snowflakes, below 2**63 (Cassandra's bigint); a larger one is nobody.
        rows = (
            await self._db.execute("SELECT user_id FROM users WHERE user_id = ?", (peer_id,))
            if peer_id < 2**63
            else []
        )
        if not rows:
            raise NotFound(f"user {peer_id} does not exist")
        chat_id = direct_chat_id(user_id, peer_id)
        members = {user_id, peer_id}
        # IF NOT EXISTS keeps the first creation time when both users open the chat at once.
        await self._db.execute(
            "INSERT INTO chats (chat_id, kind, member_ids, created_at)"
            " VALUES (?, 'direct', ?, toTimestamp(now())) IF NOT EXISTS",
            (chat_id, members),
        )
        for member in members:
            await self._db.execute(
                "UPDATE chats_by_user SET kind = 'direct', member_ids = ?"
                " WHERE user_id = ? AND chat_id = ?",
                (members, member, chat_id),
            )
        return chat_id
