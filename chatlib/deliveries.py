"""The backplane record: one ``Delivery`` per recipient of a message on the deliveries topic.

This module is the record's only codec. Messaging encodes the copies of a send with
``encode_copies``; every consumer (the live fan-out, replays, history writers, the send
verifier) reads them with ``recipient_of`` and ``decode``, so they all agree on what a valid
record is.

A copy is the fields every copy shares, serialized once per message, followed by the two
fields that differ (recipient, primary): protobuf merges concatenated messages, so a message to
M members costs M small serializations instead of M full ones, and no copy carries the member
list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from protos.chat.v1 import common_pb2, envelope_pb2

Delivery = envelope_pb2.Delivery
KINDS = ("direct", "group")


class InvalidDelivery(ValueError):
    """The bytes are not a delivery record this version can use; the message says why."""


@dataclass(frozen=True, slots=True)
class Copy:
    recipient: int
    key: bytes
    value: bytes


def key_of(recipient: int) -> bytes:
    """The record key: the recipient id in decimal (what partitioning and filtering read)."""
    return str(recipient).encode("ascii")


def recipient_of(key: bytes | None) -> int | None:
    """The recipient a record is for, read from its key alone; None if the key is malformed."""
    if not key or len(key) > 20 or not key.isdigit():
        return None
    return int(key)


def encode_copies(
    *,
    message_id: int,
    chat_id: str,
    kind: str,
    sender_id: int,
    body: str,
    client_message_id: str,
    created_at_ms: int,
    recipients: Iterable[int],
    change: common_pb2.ChatChange | None = None,
    read: bool = False,
    delivered: bool = False,
    amendment: common_pb2.Amendment | None = None,
) -> list[Copy]:
    """One copy per recipient; the sender's own copy is the primary one (history stores it)."""
    shared = Delivery(
        message_id=message_id,
        chat_id=chat_id,
        kind=kind,
        sender_id=sender_id,
        body=body,
        client_message_id=client_message_id,
        created_at_ms=created_at_ms,
        change=change,
        read=read,
        delivered=delivered,
        amendment=amendment,
    ).SerializeToString()
    return [
        Copy(
            recipient,
            key_of(recipient),
            shared
            + Delivery(recipient_id=recipient, primary=recipient == sender_id).SerializeToString(),
        )
        for recipient in recipients
    ]


def decode(value: bytes | None) -> envelope_pb2.Delivery:
    """The delivery in ``value``, checked; InvalidDelivery says what is wrong otherwise."""
    try:
        delivery = Delivery.FromString(value or b"")
    except DecodeError as exc:
        raise InvalidDelivery(f"not a Delivery: {exc}") from None
    missing = [
        name
        for name in ("message_id", "chat_id", "sender_id", "recipient_id")
        if not getattr(delivery, name)
    ]
    if missing:
        raise InvalidDelivery(f"delivery lacks {', '.join(missing)}")
    # Records written before the kind travelled in them have none; anything else is foreign.
    if delivery.kind and delivery.kind not in KINDS:
        raise InvalidDelivery(f"delivery has unknown kind {delivery.kind!r}")
    return delivery


def is_receipt(delivery: envelope_pb2.Delivery) -> bool:
    """A read or delivery receipt: a position in the chat, not an entry of its log."""
    return delivery.read or delivery.delivered


def streamed(delivery: envelope_pb2.Delivery) -> bool:
    """Whether streams carry this record: everything but the opening of a direct chat, which
    only the chat lists learn of."""
    return delivery.change.action != common_pb2.ChatChange.OPENED
