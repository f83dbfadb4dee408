"""Read and delivery receipts for a chat's other members, coalesced: at most one of each per
reader and chat per ``interval``, carrying the newest mark of that interval (never one per
message).

The reader's own devices are told at once by ``MarkRead``/``MarkDelivered`` itself; this only
tells the others.
Receipts are a courtesy, not state: the watermark is durable in the reader's own record, so
a receipt lost with a crashed process only means the others see it at the reader's next mark.
"""

from __future__ import annotations

import asyncio
import logging

from chatlib.errors import ChatError
from messaging.chats import Chat
from messaging.send.sender import Outgoing, Sender
from protos.chat.v1 import envelope_pb2

logger = logging.getLogger(__name__)


def receipt_entry(reader: int, chat: Chat, *, read: bool) -> envelope_pb2.Delivery:
    """A read (or delivery) mark of ``reader`` in ``chat``, up to the id it is produced as."""
    return envelope_pb2.Delivery(
        chat_id=chat.chat_id, kind=chat.kind, sender_id=reader, read=read, delivered=not read
    )


class ReceiptFanOut:
    def __init__(self, sender: Sender, interval: float = 1.0) -> None:
        self._sender = sender
        self._interval = interval
        #: (reader, chat id, read?) -> (newest mark, the chat as the mark found it)
        self._pending: dict[tuple[int, str, bool], tuple[int, Chat]] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, reader: int, chat: Chat, up_to: int, *, read: bool) -> None:
        key = (reader, chat.chat_id, read)
        known = self._pending.get(key)
        if known is None or up_to > known[0]:
            self._pending[key] = (up_to, chat)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while self._pending:
            await asyncio.sleep(self._interval)
            batch, self._pending = self._pending, {}
            for (reader, chat_id, read), (up_to, chat) in batch.items():
                others = chat.members - {reader}
                if not others or (
                    not read and batch.get((reader, chat_id, True), (0,))[0] >= up_to
                ):
                    continue  # nobody to tell, or the read receipt says as much
                receipt = Outgoing(receipt_entry(reader, chat, read=read), others)
                try:
                    await self._sender.publish(receipt, up_to)
                except ChatError as exc:
                    logger.warning("receipt of %d in %s not sent: %s", reader, chat_id, exc)
