"""Edits, deletions and reactions: entries of the chat's log that amend an earlier message.

Each is sent like a message (``Sender.submit``): the caller's ``client_request_id`` is its
claim, every member gets a copy, in the chat's order, once. What is checked first:

* the message exists in the chat, is a message (not a change to the chat), and the caller
  may see it (a group member since before it was sent);
* an edit: by its sender, within the live ``messages.edit_window_seconds``, not deleted;
* a deletion: by its sender, or a group's owner or admin;
* a reaction: by any member, on a message not deleted, one emoji.

The message is looked up in the record the send path keeps of each message for its first
minutes (``messaging/send/sent.py``), so nothing here waits for the history writer; an older one is
asked of the history service (``messaging/history_api.py``), once. A message in neither is
answered NOT_FOUND at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatlib.chat_ids import check_chat_id
from chatlib.config_sections import Messages
from chatlib.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from chatlib.ids import timestamp_ms
from chatlib.live_config import LiveSection
from messaging.chats import Chat, ChatDirectory
from messaging.groups.rules import ADMIN, OWNER
from messaging.groups.store import GroupStore
from messaging.history_api import HistoryApi
from messaging.send.admission import REDIS_FAILURES
from messaging.send.sender import Accepted, Outgoing, Sender, check_idempotency_key
from messaging.send.sent import SentMessages
from protos.chat.v1 import common_pb2, envelope_pb2

logger = logging.getLogger(__name__)
Amendment = common_pb2.Amendment
Delivery = envelope_pb2.Delivery
MAX_EMOJI_BYTES = 32
#: What an emoji may not contain: spaces (the storage key separates with one) and controls.
NOT_EMOJI = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Target:
    """The message an amendment is about."""

    message_id: int
    sender_id: int
    deleted: bool
    #: The caller's role in the group (None in a direct chat).
    role: str | None = None


class Amendments:
    def __init__(
        self,
        sender: Sender,
        directory: ChatDirectory,
        groups: GroupStore,
        sent: SentMessages,
        history: HistoryApi,
        messages: LiveSection[Messages],
        on_deleted: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> None:
        self._sender = sender
        self._directory = directory
        self._groups = groups
        self._sent = sent
        self._history = history
        self._messages = messages
        #: Told of each deletion once it is accepted (its files become unreachable).
        self._on_deleted = on_deleted

    async def edit(self, user: int, chat_id: str, message_id: int, body: str, key: str) -> Accepted:
        self._check(chat_id, message_id, key)
        self._sender.check_body(body)
        chat = await self._directory.check_member(chat_id, user)
        target = await self._target(chat, user, message_id)
        if target.sender_id != user:
            raise PermissionDenied("only its sender may edit a message")
        if target.deleted:
            raise FailedPrecondition(f"message {message_id} was deleted")
        window = self._messages.get().edit_window_seconds
        if time.time() * 1000 > timestamp_ms(message_id) + window * 1000:
            raise FailedPrecondition(
                f"message {message_id} can no longer be edited: messages may be edited for"
                f" {window} seconds after they are sent"
            )
        return await self._submit(user, chat, key, body, Amendment.EDITED, target)

    async def delete(self, user: int, chat_id: str, message_id: int, key: str) -> Accepted:
        self._check(chat_id, message_id, key)
        chat = await self._directory.check_member(chat_id, user)
        target = await self._target(chat, user, message_id)
        if target.sender_id != user and target.role not in (OWNER, ADMIN):
            raise PermissionDenied(
                "only its sender (or a group's owner or admin) may delete a message"
            )
        accepted = await self._submit(user, chat, key, "", Amendment.DELETED, target)
        if self._on_deleted is not None:
            await self._on_deleted(chat.chat_id, message_id)
        try:
            await self._sent.mark_deleted(chat.chat_id, message_id, target.sender_id)
        except REDIS_FAILURES as exc:
            # The deletion is in the log: history applies it whatever happens here. Until the
            # record says so, an edit or reaction may still be accepted, and history applies
            # it under the deletion, which nothing written later can undo.
            logger.warning("recording the deletion of message %d failed: %s", message_id, exc)
        return accepted

    async def react(
        self, user: int, chat_id: str, message_id: int, emoji: str, remove: bool, key: str
    ) -> Accepted:
        self._check(chat_id, message_id, key)
        check_emoji(emoji)
        chat = await self._directory.check_member(chat_id, user)
        target = await self._target(chat, user, message_id)
        if target.deleted:
            raise FailedPrecondition(f"message {message_id} was deleted")
        action = Amendment.REACTION_REMOVED if remove else Amendment.REACTION_ADDED
        return await self._submit(user, chat, key, "", action, target, emoji)

    def _check(self, chat_id: str, message_id: int, key: str) -> None:
        check_chat_id(chat_id)
        check_idempotency_key(key, "client_request_id")
        if not message_id:
            raise InvalidArgument("message_id is required")

    async def _submit(
        self,
        user: int,
        chat: Chat,
        key: str,
        body: str,
        action: common_pb2.Amendment.Action.ValueType,
        target: Target,
        emoji: str = "",
    ) -> Accepted:
        entry = Delivery(
            chat_id=chat.chat_id,
            kind=chat.kind,
            sender_id=user,
            body=body,
            client_message_id=key,
            amendment=Amendment(
                action=action,
                message_id=target.message_id,
                emoji=emoji,
                message_sender_id=target.sender_id,
            ),
        )
        return await self._sender.submit(Outgoing(entry, chat.members, chat.version))

    async def visible(self, chat_id: str, user: int, message_id: int) -> Target:
        """A message the user can read (a former group member: one sent while a member), not
        deleted; NotFound otherwise."""
        chat, _ = await self._directory.check_reader(chat_id, user)
        target = await self._target(chat, user, message_id)
        if target.deleted:
            raise NotFound(f"message {message_id} of chat {chat_id!r} was deleted")
        return target

    async def _target(self, chat: Chat, user: int, message_id: int) -> Target:
        """The message, if it is one the user can see in the chat; NotFound otherwise."""
        missing = NotFound(f"chat {chat.chat_id!r} has no message {message_id}")
        if message_id >= 2**63:
            raise missing
        role = None
        if chat.kind == "group":
            member = (await self._groups.load(chat.chat_id)).rows.get(user)
            if member is None or message_id < member.since_id:
                raise missing
            if member.until_id is not None and message_id > member.until_id:
                raise missing  # sent after they left
            role = member.role
        try:
            sent = await self._sent.lookup(chat.chat_id, message_id)
        except REDIS_FAILURES as exc:
            raise Unavailable(f"cannot look the message up right now: {exc}") from None
        if sent is not None:
            return Target(message_id, sent.sender_id, sent.deleted, role)
        # Older than the records kept: history has written it by now, or it does not exist.
        stored = await self._history.message(chat.chat_id, message_id)
        if stored is None:
            raise missing
        if stored.HasField("change"):
            raise FailedPrecondition(f"entry {message_id} is a change to the chat, not a message")
        return Target(message_id, stored.sender_id, stored.deleted, role)


def check_emoji(emoji: str) -> None:
    if not emoji:
        raise InvalidArgument("emoji is required")
    if len(emoji.encode("utf-8")) > MAX_EMOJI_BYTES or NOT_EMOJI.search(emoji):
        raise InvalidArgument(
            f"emoji must be at most {MAX_EMOJI_BYTES} bytes, without spaces or control characters"
        )
