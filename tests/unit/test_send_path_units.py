"""The pieces of the send path that need no network: the record codec, claims, recent
deliveries held for resumes, the Redis wire format."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from chatlib import deliveries
from chatlib.ids import smallest_id_at, timestamp_ms, write_time
from chatlib.redis_wire import RedisUnavailable, _Connection, encode
from messaging.send.admission import Owner, claim_field, claim_keys, parse
from messaging.send.sender import Unproduced
from messaging.streams.cursor import Cursor
from messaging.streams.recent import OVERHEAD_BYTES, RecentDeliveries
from messaging.streams.registry import message_event

#: A message id minted 123 ms after the ids' epoch.
MESSAGE_ID = smallest_id_at(1_767_225_600_123) | 5


def _copies(recipients: list[int], sender: int = 7) -> list[deliveries.Copy]:
    entry = deliveries.Delivery(
        chat_id="d:7:9", kind="direct", sender_id=sender, body="hello", client_message_id="c1"
    )
    return deliveries.encode(entry, MESSAGE_ID, recipients)


def test_each_copy_decodes_to_the_message_for_its_recipient_and_only_the_sender_is_primary() -> (
    None
):
    copies = _copies([7, 9])
    assert [c.recipient for c in copies] == [7, 9]
    assert [c.key for c in copies] == [b"7", b"9"]
    decoded = [deliveries.decode(c.value) for c in copies]
    assert [(d.recipient_id, d.primary) for d in decoded] == [(7, True), (9, False)]
    for d in decoded:
        assert (d.message_id, d.chat_id, d.kind, d.sender_id, d.body) == (
            MESSAGE_ID,
            "d:7:9",
            "direct",
            7,
            "hello",
        )
    live = message_event(Cursor(3, 42), decoded[1])
    assert live.message_id == MESSAGE_ID
    assert live.event.cursor == "v1.3.42"
    message = live.event.message
    assert (message.message_id, message.client_message_id, message.created_at_ms) == (
        MESSAGE_ID,
        "c1",
        1_767_225_600_123,
    )


def test_a_copy_costs_the_same_whatever_the_member_count() -> None:
    small = _copies([7, 9])
    large = _copies(list(range(1, 1001)))
    assert len(large[0].value) <= len(small[0].value) + 2  # recipient ids differ in width


def test_a_group_entry_is_one_record_per_partition_listing_its_members() -> None:
    entry = deliveries.Delivery(
        chat_id="g:77", kind="group", sender_id=7, body="hello all", client_message_id="c1"
    )
    records = deliveries.encode_group(entry, MESSAGE_ID, {4: [9, 12], 1: [3, 7]})
    assert [(partition, key) for partition, key, _ in records] == [(1, b"#g:77"), (4, b"#g:77")]
    decoded = [deliveries.decode(value) for _, _, value in records]
    # The record listing the sender is the primary one; no record names one recipient.
    assert [(list(d.recipient_ids), d.primary, d.recipient_id) for d in decoded] == [
        ([3, 7], True, 0),
        ([9, 12], False, 0),
    ]
    assert [deliveries.recipients(d) for d in decoded] == [[3, 7], [9, 12]]
    assert deliveries.is_for(decoded[1], 12)
    assert not deliveries.is_for(decoded[1], 7)
    assert all(d.body == "hello all" and d.message_id == MESSAGE_ID for d in decoded)
    assert deliveries.recipient_of(records[0][1]) is None
    assert deliveries.is_group_key(records[0][1])
    assert not deliveries.is_group_key(b"7")
    # The message is carried once per record, its members at 8 bytes each.
    few = deliveries.encode_group(entry, MESSAGE_ID, {0: [5]})[0][2]
    many = deliveries.encode_group(entry, MESSAGE_ID, {0: list(range(1, 1001))})[0][2]
    assert len(many) - len(few) <= 8 * 999 + 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"\xff\xfe not a protobuf", "not a Delivery"),
        (b"", "lacks message_id, chat_id, sender_id, recipient_id"),
        (
            deliveries.Delivery(message_id=1, chat_id="d:1:2", sender_id=1).SerializeToString(),
            "lacks recipient_id",
        ),
        (
            deliveries.Delivery(
                message_id=1, chat_id="d:1:2", sender_id=1, recipient_id=2, kind="secret"
            ).SerializeToString(),
            "unknown kind",
        ),
        (
            deliveries.Delivery(
                message_id=1, chat_id="g:1", sender_id=1, recipient_id=2, recipient_ids=[2]
            ).SerializeToString(),
            "both recipient_id and recipient_ids",
        ),
    ],
)
def test_a_record_that_is_not_a_delivery_is_refused_with_the_reason(
    value: bytes, problem: str
) -> None:
    with pytest.raises(deliveries.InvalidDelivery, match=problem):
        deliveries.decode(value)


def test_the_recipient_is_read_from_the_key_alone() -> None:
    assert deliveries.recipient_of(b"18446744073709551615") == 2**64 - 1
    for bad in (None, b"", b"-1", b"12a", b"1" * 21):
        assert deliveries.recipient_of(bad) is None


def test_claims_are_keyed_per_sender_day_and_message() -> None:
    assert claim_keys(42, 100) == [
        "chat:dedup:{42}:99",
        "chat:dedup:{42}:100",
        "chat:dedup:{42}:101",
    ]
    assert claim_field("d:1:2", "c1") != claim_field("d:1:3", "c1")  # same id, other chat
    assert len(claim_field("d:1:2", "c1")) == 8
    assert parse("123:a") == (123, True, None)
    assert parse("123:p:5:tok") == (123, False, Owner(5, "tok"))


def test_recent_deliveries_hold_the_newest_records_and_say_what_they_cover() -> None:
    value = b"x" * 60
    budget = 10 * (len(value) + OVERHEAD_BYTES)
    recent = RecentDeliveries(budget)
    recent.start(3, 100)
    assert recent.covers(3, 99)
    assert not recent.covers(3, 98)
    for offset in range(100, 130):
        recent.add(3, offset, 1 if offset % 2 else 2, value)
    # Only the last ten fit: [120, 130) is held, and only cursors from 119 on are covered.
    assert recent.covers(3, 119)
    assert not recent.covers(3, 118)
    assert [o for o, _ in recent.replay(3, 1, 119, 130)] == [121, 123, 125, 127, 129]
    assert [o for o, _ in recent.replay(3, 2, 124, 128)] == [126]
    assert recent.replay(3, 5, 119, 130) == []
    recent.stop(3)
    assert not recent.covers(3, 200)
    recent.add(3, 131, 1, value)  # a partition that is not fed here is not held
    assert recent.replay(3, 1, 0, 1000) == []


def test_recent_group_records_replay_to_their_members_in_order_with_the_copies() -> None:
    recent = RecentDeliveries(10_000)
    recent.start(0, 10)
    recent.add(0, 10, 1, b"direct to 1")
    recent.add_group(0, 11, [1, 2], b"group to 1 and 2")
    recent.add(0, 12, 2, b"direct to 2")
    recent.add_group(0, 13, [2, 3], b"group to 2 and 3")
    recent.add(0, 14, 1, b"direct to 1 again")
    assert [o for o, _ in recent.replay(0, 1, 9, 20)] == [10, 11, 14]
    assert [o for o, _ in recent.replay(0, 2, 9, 20)] == [11, 12, 13]
    assert [o for o, _ in recent.replay(0, 3, 11, 13)] == []
    # Evicted oldest first, whatever the shape: what is held is still every record of a range.
    small = RecentDeliveries(3 * (16 + OVERHEAD_BYTES))
    small.start(0, 0)
    small.add_group(0, 0, [1], b"g" * 16)
    for offset in range(1, 4):
        small.add(0, offset, 1, b"d" * 16)
    assert [o for o, _ in small.replay(0, 1, -1, 10)] == [1, 2, 3]
    assert small.covers(0, 0)
    assert not small.covers(0, -1)


def test_write_times_order_messages_as_their_ids_do() -> None:
    ids = [(1000 << 22) | 5, (1000 << 22) | 6, (1001 << 22) | 0]
    times = [write_time(i) for i in ids]
    assert times == sorted(times)
    assert times[0] // 1000 == timestamp_ms(ids[0])


def test_commands_are_encoded_in_the_redis_protocol() -> None:
    assert (
        encode((b"HSET", "k", b"\x00f", 7))
        == b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$2\r\n\x00f\r\n$1\r\n7\r\n"
    )


def test_unproduced_ids_are_taken_once_and_only_the_newest_are_kept() -> None:
    unproduced = Unproduced()
    unproduced.add(7)
    assert unproduced.take(7)
    assert not unproduced.take(7)  # a second retry settles as usual
    assert not unproduced.take(8)
    for message_id in range(Unproduced.LIMIT + 1):
        unproduced.add(message_id)
    assert not unproduced.take(0)
    assert unproduced.take(Unproduced.LIMIT)


async def test_durable_writes_of_a_connection_lost_before_its_flush_fail_at_once() -> None:
    # The connection goes between a write and the end of the event loop's turn that would have
    # sent it with its WAIT: the caller is told, not left waiting for a WAIT never sent.
    # Nor is a failure logged as never retrieved: the caller retrieves it through its own future.
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    ours, theirs = socket.socketpair()
    try:
        _, connection = await loop.create_connection(lambda: _Connection(durable=True), sock=ours)
        [reply] = connection.send(encode(("SET", "key", "value")))
        connection.connection_lost(ConnectionResetError("reset by peer"))
        with pytest.raises(RedisUnavailable, match="reset by peer"):
            await asyncio.wait_for(reply, 1.0)
        del connection, reply
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)
        theirs.close()
