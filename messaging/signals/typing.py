"""Typing: an ephemeral event to a chat's other members, never stored.

A typing event lasts ``messages.typing_seconds`` (its ``expires_at_ms``) unless renewed, so a
client that stops without saying so stops showing as typing on its own. Clients call
SetTyping on every keystroke burst; this server forwards a user's typing in a chat at most
once per half that time (the calls between are answered and change nothing: the event
already sent covers them), and refuses a user who calls more than ``CALLS_PER_SECOND`` times
a second. A "stopped" is always forwarded (it is what clears the others' display).

The state is this server's memory: a user's calls all come here (the BFF and clients route a
user to the server owning their partition), and losing it in a restart only lets one more
event through.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from chatlib.chat_ids import check_chat_id
from chatlib.config_sections import Messages
from chatlib.errors import ResourceExhausted
from chatlib.live_config import LiveSection
from messaging.chats import ChatDirectory
from messaging.signals.channel import Signals
from protos.chat.v1 import messaging_pb2

CALLS_PER_SECOND = 10
#: (user, chat) pairs remembered; the oldest are forgotten first.
REMEMBERED = 100_000


class TypingSignals:
    def __init__(
        self, directory: ChatDirectory, signals: Signals, messages: LiveSection[Messages]
    ) -> None:
        self._directory = directory
        self._signals = signals
        self._messages = messages
        #: (user, chat) -> when the last typing event was forwarded (monotonic seconds)
        self._forwarded: OrderedDict[tuple[int, str], float] = OrderedDict()
        #: user -> (the current second, calls in it)
        self._calls: OrderedDict[int, tuple[int, int]] = OrderedDict()

    async def set(self, user: int, chat_id: str, *, stopped: bool) -> None:
        check_chat_id(chat_id)
        now = time.monotonic()
        self._count_call(user, now)
        chat = await self._directory.check_member(chat_id, user)
        seconds = self._messages.get().typing_seconds
        key = (user, chat_id)
        if stopped:
            self._forwarded.pop(key, None)
        else:
            last = self._forwarded.get(key)
            if last is not None and now - last < seconds / 2:
                return
            self._forwarded[key] = now
            self._forwarded.move_to_end(key)
            if len(self._forwarded) > REMEMBERED:
                self._forwarded.popitem(last=False)
        event = messaging_pb2.ClientEvent(
            typing=messaging_pb2.Typing(
                chat_id=chat_id,
                user_id=user,
                stopped=stopped,
                expires_at_ms=0 if stopped else int(time.time() * 1000) + seconds * 1000,
            )
        )
        await self._signals.send(chat.members - {user}, event)

    def _count_call(self, user: int, now: float) -> None:
        second = int(now)
        current, calls = self._calls.get(user, (second, 0))
        calls = calls + 1 if current == second else 1
        self._calls[user] = (second, calls)
        self._calls.move_to_end(user)
        if len(self._calls) > REMEMBERED:
            self._calls.popitem(last=False)
        if calls > CALLS_PER_SECOND:
            raise ResourceExhausted(
                f"typing is limited to {CALLS_PER_SECOND} calls a second per user; slow down",
                retry_after_ms=1000,
            )
