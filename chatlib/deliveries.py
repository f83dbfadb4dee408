"""The backplane record: a ``Delivery`` on the deliveries topic, in one of two shapes.

* **A direct chat's copy**: one record per recipient, keyed by the recipient's id, on the
  recipient's partition (two records per message; one when both members share a partition
  is not worth a second shape's reads: a fan-out skips an offline recipient's copy by its key
  without decoding it).
* **A group record**: one record per partition that holds members of the group, keyed
  ``#<chat id>``, listing those members in ``recipient_ids``. A message to M members is at
  most P records (P partitions) carrying the message once each, plus 8 bytes per member: the
  recipients are the membership the send path's fence found in force at the message's id,
  so every reader (the fan-out expanding a record to its online members, a replay, the
  notifier, the settling of a retry) agrees on them without reading membership again.

This module is the record's only codec and its only mapping to what readers need. The send
path describes an entry once, as the fields every copy shares (a ``Delivery`` without message
id or recipient), and ``encode`` or ``encode_group`` makes its records; every consumer reads
them with ``recipient_of`` and ``is_group_key`` (from the key alone), ``decode`` and
``recipients``, and
turns one into what a client sees with ``message_of`` (a message, a change or an amendment) or
``receipt_of`` (a read or delivery mark), so they all agree on what a valid record is and what
it says.

A record is the entry serialized once per message, its id and time, then the fields that
differ (recipients, primary): protobuf merges concatenated messages, so a message makes one
full serialization however many records it has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from chatlib.ids import timestamp_ms
from protos.chat.v1 import common_pb2, envelope_pb2, messaging_pb2

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


#: The first byte of a group record's key (a recipient's key is digits only).
GROUP_MARK = b"#"


def group_key(chat_id: str) -> bytes:
    """A group record's key: ``#`` and the chat id (what settling looks for)."""
    return GROUP_MARK + chat_id.encode()


def is_group_key(key: bytes | None) -> bool:
    return key is not None and key[:1] == GROUP_MARK


def recipient_of(key: bytes | None) -> int | None:
    """The recipient a direct copy is for, read from its key alone; None for any other key (a
    group record's, or a malformed one)."""
    if not key or len(key) > 20 or not key.isdigit():
        return None
    return int(key)


def recipients(delivery: envelope_pb2.Delivery) -> list[int]:
    """Whom a decoded record is for: a group record's listed members, or the one recipient."""
    if delivery.recipient_ids:
        return list(delivery.recipient_ids)
    return [delivery.recipient_id]


def is_for(delivery: envelope_pb2.Delivery, user: int) -> bool:
    """Whether ``user`` is among the record's recipients."""
    return delivery.recipient_id == user or user in delivery.recipient_ids


def encode(entry: Delivery, message_id: int, recipients: Iterable[int]) -> list[Copy]:
    """One copy of ``entry`` per recipient, as message ``message_id`` (its time is the id's);
    the sender's own copy is the primary one (history stores it). ``entry`` is not changed."""
    shared = (
        entry.SerializeToString()
        + Delivery(
            message_id=message_id, created_at_ms=timestamp_ms(message_id)
        ).SerializeToString()
    )
    sender = entry.sender_id
    return [
        Copy(
            recipient,
            key_of(recipient),
            shared
            + Delivery(recipient_id=recipient, primary=recipient == sender).SerializeToString(),
        )
        for recipient in recipients
    ]


def encode_group(
    entry: Delivery, message_id: int, by_partition: dict[int, list[int]]
) -> list[tuple[int, bytes, bytes]]:
    """One group record of ``entry`` per partition, as message ``message_id``: (partition,
    key, value), each listing the recipients given for its partition; the record listing the
    sender is the primary one (history stores the message from it)."""
    shared = (
        entry.SerializeToString()
        + Delivery(
            message_id=message_id, created_at_ms=timestamp_ms(message_id)
        ).SerializeToString()
    )
    key = group_key(entry.chat_id)
    sender = entry.sender_id
    return [
        (
            partition,
            key,
            shared + Delivery(recipient_ids=members, primary=sender in members).SerializeToString(),
        )
        for partition, members in sorted(by_partition.items())
    ]


def stamped(entry: Delivery, message_id: int) -> Delivery:
    """``entry`` as its copies carry it once it is message ``message_id`` (no recipient)."""
    found = Delivery()
    found.CopyFrom(entry)
    found.message_id = message_id
    found.created_at_ms = timestamp_ms(message_id)
    return found


def decode(value: bytes | None) -> envelope_pb2.Delivery:
    """The delivery in ``value``, checked; InvalidDelivery says what is wrong otherwise."""
    try:
        delivery = Delivery.FromString(value or b"")
    except DecodeError as exc:
        raise InvalidDelivery(f"not a Delivery: {exc}") from None
    missing = [
        name for name in ("message_id", "chat_id", "sender_id") if not getattr(delivery, name)
    ]
    if not delivery.recipient_id and not delivery.recipient_ids:
        missing.append("recipient_id")
    elif delivery.recipient_id and delivery.recipient_ids:
        raise InvalidDelivery("delivery has both recipient_id and recipient_ids")
    if missing:
        raise InvalidDelivery(f"delivery lacks {', '.join(missing)}")
    # Records written before the kind travelled in them have none; anything else is foreign.
    if delivery.kind and delivery.kind not in KINDS:
        raise InvalidDelivery(f"delivery has unknown kind {delivery.kind!r}")
    return delivery


def message_of(
    delivery: envelope_pb2.Delivery, into: common_pb2.Message | None = None
) -> common_pb2.Message:
    """The entry a record carries as clients see it: a message, a change to the chat or an
    amendment (its fields set in ``into``, a message of a client event, say, without a copy).
    Not for a receipt (``receipt_of``)."""
    message = common_pb2.Message() if into is None else into
    message.message_id = delivery.message_id
    message.chat_id = delivery.chat_id
    message.sender_id = delivery.sender_id
    message.body = delivery.body
    message.client_message_id = delivery.client_message_id
    message.created_at_ms = delivery.created_at_ms
    if delivery.attachments:
        message.attachments.extend(delivery.attachments)
    if delivery.HasField("change"):
        message.change.CopyFrom(delivery.change)
    elif delivery.HasField("amendment"):
        message.amendment.CopyFrom(delivery.amendment)
    return message


def entry_of(message: common_pb2.Message, kind: str) -> Delivery:
    """A log entry kept as a message (a group's last change, say) as the send path produces
    it again: ``message_of`` undone, for a chat of ``kind``."""
    return Delivery(
        chat_id=message.chat_id,
        kind=kind,
        sender_id=message.sender_id,
        body=message.body,
        client_message_id=message.client_message_id,
        attachments=message.attachments,
        change=message.change if message.HasField("change") else None,
        amendment=message.amendment if message.HasField("amendment") else None,
    )


def receipt_of(delivery: envelope_pb2.Delivery, into: messaging_pb2.Receipt) -> None:
    """A read or delivery mark as its recipient's streams are told it (set in ``into``)."""
    into.chat_id = delivery.chat_id
    into.user_id = delivery.sender_id
    into.delivered_up_to = delivery.message_id  # read implies received
    if delivery.read:
        into.read_up_to = delivery.message_id


def is_receipt(delivery: envelope_pb2.Delivery) -> bool:
    """A read or delivery receipt: a position in the chat, not an entry of its log."""
    return delivery.read or delivery.delivered


def streamed(delivery: envelope_pb2.Delivery) -> bool:
    """Whether streams carry this record: everything but the opening of a direct chat, which
    only the chat lists learn of."""
    return delivery.change.action != common_pb2.ChatChange.OPENED
