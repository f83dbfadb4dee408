"""Chats and membership: who may send to and read a chat. Messaging owns these decisions."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from chatlib.cassandra import AsyncSession
from chatlib.chat_ids import direct_chat_id, direct_members
from chatlib.errors import InvalidArgument, NotFound, PermissionDenied
from messaging.blocks import Blocks
from messaging.groups.store import GroupStore
from messaging.history_api import HistoryApi

CACHE_SIZE = 100_000


def replay_direct(db: AsyncSession, chat_id: str) -> tuple[Any, int]:
    """The write that redoes a direct chat's row from the log (``python -m history
    rebuild``): its members are in its id."""
    return db.bind(
        "INSERT INTO chats (chat_id, kind, member_ids) VALUES (?, 'direct', ?)",
        (chat_id, set(direct_members(chat_id))),
    ), 100


@dataclass(frozen=True)
class Chat:
    chat_id: str
    kind: str
    members: frozenset[int]
    #: A group's membership version that ``members`` are from (0 for direct chats).
    version: int = 0
    #: The id of the group's last change.
    last_change: int = 0


class ChatDirectory:
    """Membership, cached. Direct chats (Cassandra's ``chats``) never change members; a
    group's cached members carry their version, which the membership fence checks on every
    send (``messaging/groups/fence.py``), so a stale entry is noticed and read again
    (``refresh``)."""

    def __init__(
        self,
        db: AsyncSession,
        groups: GroupStore,
        history: HistoryApi,
        blocks: Blocks | None = None,
    ) -> None:
        self._db = db
        self._groups = groups
        self._history = history
        #: Who blocked whom (None: nobody is ever blocked, as in the send path's own tests).
        self._blocks = blocks
        self._chats: OrderedDict[str, Chat] = OrderedDict()

    async def chat(self, chat_id: str) -> Chat:
        cached = self._chats.get(chat_id)
        if cached is not None:
            self._chats.move_to_end(chat_id)
            return cached
        if chat_id.startswith("g:"):
            return await self.refresh(chat_id)
        rows = await self._db.execute(
            "SELECT kind, member_ids FROM chats WHERE chat_id = ?", (chat_id,)
        )
        if not rows:
            raise NotFound(f"chat {chat_id!r} does not exist")
        found = Chat(chat_id, rows[0].kind or "direct", frozenset(rows[0].member_ids or ()))
        self._remember(found)
        return found

    async def refresh(self, chat_id: str) -> Chat:
        """A group's membership read again from Cassandra (and remembered)."""
        state = await self._groups.load(chat_id)
        if state.version == 0:
            self._chats.pop(chat_id, None)
            raise NotFound(f"chat {chat_id!r} does not exist")
        self._remember(Chat(chat_id, "group", state.members, state.version, state.last_change_id))
        return self._chats[chat_id]

    def _remember(self, found: Chat) -> None:
        chat_id = found.chat_id
        known = self._chats.get(chat_id)
        if known is None or known.version <= found.version:  # reads may finish out of order
            self._chats[chat_id] = found
        self._chats.move_to_end(chat_id)
        if len(self._chats) > CACHE_SIZE:
            self._chats.popitem(last=False)

    async def check_member(self, chat_id: str, user_id: int) -> Chat:
        found = await self.chat(chat_id)
        if user_id not in found.members and found.kind == "group":
            # Perhaps added since this server read the group: read it again before refusing
            # (a stale entry that still lists a removed member is caught by the fence).
            found = await self.refresh(chat_id)
        if user_id not in found.members:
            raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        return found

    async def check_sender(self, chat_id: str, user_id: int) -> Chat:
        """``check_member``, and in a direct chat neither member blocked the other. A blocked
        sender is refused in the words a stranger gets, so the block is not revealed."""
        found = await self.check_member(chat_id, user_id)
        if found.kind == "direct" and self._blocks is not None:
            peer = _peer(found, user_id)
            blockers = await self._blocks.blockers(user_id, peer)
            if user_id in blockers:
                raise PermissionDenied(f"you blocked user {peer}; unblock them to write to them")
            if blockers:
                raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        return found

    async def check_reader(self, chat_id: str, user_id: int) -> tuple[Chat, bool]:
        """The chat if the user may read it, and whether they are a member now: a group's
        former members still read what they saw while members."""
        try:
            return await self.check_member(chat_id, user_id), True
        except PermissionDenied:
            if chat_id.startswith("g:") and user_id in (await self._groups.load(chat_id)).rows:
                return await self.chat(chat_id), False
            raise

    async def open_direct(self, user_id: int, peer_id: int) -> str:
        if peer_id == user_id:
            raise InvalidArgument("peer_id must be another user")
        if not peer_id:
            raise InvalidArgument("peer_id is required")
        if peer_id not in await self._history.usernames([peer_id]):
            raise NotFound(f"user {peer_id} does not exist")
        chat_id = direct_chat_id(user_id, peer_id)
        if self._blocks is not None and peer_id in await self._blocks.blockers(user_id, peer_id):
            # The words a stranger's send gets there: the block is not revealed.
            raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        # IF NOT EXISTS keeps the first creation time when both users open the chat at once.
        # (The members' chat lists learn of it from the log: messaging/groups/changes.py.)
        await self._db.execute(
            "INSERT INTO chats (chat_id, kind, member_ids, created_at)"
            " VALUES (?, 'direct', ?, toTimestamp(now())) IF NOT EXISTS",
            (chat_id, {user_id, peer_id}),
        )
        return chat_id


def _peer(chat: Chat, user_id: int) -> int:
    """The other member of a direct chat (the user themself in a chat with oneself)."""
    return next((m for m in chat.members if m != user_id), user_id)
