"""The notifier's bookkeeping without Kafka or a webhook: bursts per chat, the offsets that
may be committed, the body a push gateway gets; and how history counts reactions."""

from __future__ import annotations

from chatlib import deliveries
from history.store import reaction_counts
from notifier.bursts import Bursts, Offsets, Pending
from notifier.consumer import _notifiable, notification
from protos.chat.v1 import common_pb2


def pending(offset: int, body: str = "hi", sender: int = 7, partition: int = 3) -> Pending:
    message = common_pb2.Message(message_id=1000 + offset, sender_id=sender, body=body)
    return Pending(partition, offset, message)


def test_a_burst_collects_one_chats_messages_until_it_is_due() -> None:
    bursts = Bursts()
    bursts.add(1, "d:1:7", "direct", pending(10), now=100.0, collapse=5)
    bursts.add(1, "d:1:7", "direct", pending(11), now=103.0, collapse=5)
    bursts.add(1, "g:9", "group", pending(12), now=103.0, collapse=5)
    bursts.add(2, "d:2:7", "direct", pending(13), now=104.0, collapse=5)
    assert bursts.due(104.9) == []
    [first] = bursts.due(105.0)
    assert (first.chat_id, [m.offset for m in first.messages]) == ("d:1:7", [10, 11])
    # A message after the burst went out opens the next one.
    bursts.add(1, "d:1:7", "direct", pending(14), now=105.5, collapse=5)
    assert sorted(b.chat_id for b in bursts.due(110.6)) == ["d:1:7", "d:2:7", "g:9"]
    assert len(bursts) == 0


def test_bursts_of_a_revoked_partition_are_forgotten() -> None:
    bursts = Bursts()
    bursts.add(1, "d:1:7", "direct", pending(10, partition=3), now=0, collapse=1)
    bursts.add(2, "d:2:7", "direct", pending(11, partition=4), now=0, collapse=1)
    bursts.drop_partitions({3})
    assert [b.recipient for b in bursts.due(5)] == [2]


def test_offsets_commit_only_below_what_is_still_being_notified() -> None:
    offsets = Offsets()
    for offset in range(5):
        offsets.read(0, offset)
    offsets.read(1, 40)
    assert offsets.committable() == {0: 5, 1: 41}
    offsets.hold(0, 2)
    offsets.hold(0, 4)
    assert offsets.committable() == {0: 2, 1: 41}
    offsets.release(0, 2)
    assert offsets.committable() == {0: 4, 1: 41}
    offsets.release(0, 4)
    offsets.forget({1})
    assert offsets.committable() == {0: 5}


def test_an_offset_in_many_bursts_is_held_until_the_last_of_them_is_done() -> None:
    # A group record is one offset in the burst of each offline member it lists.
    offsets = Offsets()
    offsets.read(0, 7)
    offsets.hold(0, 7)
    offsets.hold(0, 7)
    offsets.release(0, 7)
    assert offsets.committable() == {0: 7}
    offsets.release(0, 7)
    assert offsets.committable() == {0: 8}


def test_a_group_record_notifies_its_members_but_not_its_sender() -> None:
    message = deliveries.Delivery(
        message_id=5, chat_id="g:1", kind="group", sender_id=7, recipient_ids=[7, 8], body="x"
    )
    assert _notifiable(message, 0)
    assert _notifiable(message, 8)
    assert not _notifiable(message, 7)
    added = deliveries.Delivery()
    added.CopyFrom(message)
    added.change.action = common_pb2.ChatChange.ADDED
    added.change.user_ids.append(8)
    assert _notifiable(added, 8)
    assert not _notifiable(added, 9)
    receipt = deliveries.Delivery(chat_id="g:1", sender_id=7, recipient_ids=[8], read=True)
    assert not _notifiable(receipt, 0)
    assert not _notifiable(receipt, 8)


def test_the_notification_body_names_the_burst_and_hides_previews_on_request() -> None:
    bursts = Bursts()
    bursts.add(5, "g:9", "group", pending(20, "first", sender=7), now=0, collapse=1)
    bursts.add(5, "g:9", "group", pending(21, "x" * 300, sender=8), now=0, collapse=1)
    [burst] = bursts.due(2)
    body = notification(burst, burst.messages, previews=True)
    assert body["notification_id"] == "5:g:9:3:21"
    assert (body["recipient_id"], body["chat_id"], body["collapse_key"]) == ("5", "g:9", "g:9")
    assert (body["sender_id"], body["sender_ids"], body["count"]) == ("8", ["7", "8"], 2)
    assert body["message_ids"] == ["1020", "1021"]
    assert body["preview"] == "x" * 120
    assert notification(burst, burst.messages, previews=False)["preview"] is None


def test_reactions_are_counted_per_emoji_with_the_viewers_own() -> None:
    cells = {"\N{THUMBS UP SIGN} 1": 10, "\N{THUMBS UP SIGN} 2": 11, "\N{HEAVY BLACK HEART} 2": 12}
    counts = reaction_counts(cells, viewer=1)
    assert [(r.emoji, r.count, r.mine) for r in counts] == [
        ("\N{THUMBS UP SIGN}", 2, True),
        ("\N{HEAVY BLACK HEART}", 1, False),
    ]
