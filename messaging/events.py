"""Decoding delivery records into the events clients receive."""

from __future__ import annotations

from confluent_kafka import Message

from messaging.cursor import Cursor
from messaging.streams import LiveEvent
from protos.chat.v1 import common_pb2, envelope_pb2


def decode(record: Message) -> tuple[int, LiveEvent]:
    """(recipient id, event) of a delivery record; DecodeError/ValueError if it is not one."""
    delivery = envelope_pb2.Delivery.FromString(record.value() or b"")
    if not delivery.recipient_id or not delivery.message_id:
        raise ValueError("delivery lacks recipient_id or message_id")
    message = common_pb2.Message(
        message_id=delivery.message_id,
        chat_id=delivery.chat_id,
        sender_id=delivery.sender_id,
        body=delivery.body,
        client_message_id=delivery.client_message_id,
        created_at_ms=delivery.created_at_ms,
    )
    cursor = Cursor(record.partition() or 0, record.offset() or 0)
    return delivery.recipient_id, LiveEvent(cursor, message)
