"""History's writes against the real Cassandra: chat state without reads stays right whatever
order and however often copies arrive; unread counts come from the read watermark."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import history
import messaging
from chatlib import cassandra, deliveries, migrations
from chatlib.buckets import BUCKET_MS
from chatlib.ids import EPOCH_MS, TIME_SHIFT
from history.store import UNREAD_CAP, HistoryStore
from protos.chat.v1 import common_pb2
from tests.integration.conftest import REPLICATION, Endpoints

ALICE, BOB = 1001, 1002
CHAT = f"d:{ALICE}:{BOB}"
START_MS = EPOCH_MS + 400 * 86_400_000
Amendment = common_pb2.Amendment


@pytest.fixture
def store(endpoints: Endpoints, unique: str) -> Iterator[HistoryStore]:
    cluster, session = cassandra.connect(endpoints.cassandra)
    try:
        for owner, folder in (
            ("history", history.MIGRATIONS),
            ("messaging", messaging.MIGRATIONS),
        ):
            migrations.apply(session, unique, REPLICATION, owner, folder)
        yield HistoryStore(cassandra.AsyncSession(session, unique))
        session.execute(f"DROP KEYSPACE IF EXISTS {unique}")
    finally:
        cluster.shutdown()


def _message_id(at_ms: int, sequence: int = 0) -> int:
    return ((at_ms - EPOCH_MS) << TIME_SHIFT) | sequence


def _copies(message_id: int, sender: int, body: str) -> list[deliveries.Delivery]:
    return [
        deliveries.decode(c.value)
        for c in deliveries.encode(
            deliveries.Delivery(
                chat_id=CHAT, kind="direct", sender_id=sender, body=body, client_message_id=body
            ),
            message_id,
            [ALICE, BOB],
        )
    ]


def at_ms(message_id: int) -> int:
    return (message_id >> TIME_SHIFT) + EPOCH_MS


async def test_the_newest_message_wins_in_any_order_and_replays_change_nothing(
    store: HistoryStore,
) -> None:
    ids = [_message_id(START_MS + n * 1000) for n in range(3)]
    first, second, third = (_copies(i, ALICE, f"m{n}") for n, i in enumerate(ids))
    # The newest arrives first, the oldest last; then the whole lot again (a replay).
    await store.persist(third)
    await store.persist(first + second)
    await store.persist(first + second + third)
    for user in (ALICE, BOB):
        [chat] = (await store.chats_of(user, 10))[0]
        assert (chat.last_message_id, chat.last_preview, chat.last_sender_id) == (
            ids[2],
            "m2",
            ALICE,
        )
    messages, more = await store.page(CHAT, before_id=0, after_id=0, limit=10)
    assert [m.message_id for m in messages] == sorted(ids, reverse=True)
    assert not more


async def test_unread_counts_follow_the_read_watermark_and_count_each_message_once(
    store: HistoryStore,
) -> None:
    from_alice = [_message_id(START_MS + n * 1000) for n in range(5)]
    for message_id in from_alice:
        await store.persist(_copies(message_id, ALICE, "hi"))
    await store.persist(_copies(from_alice[2], ALICE, "hi"))  # a duplicated copy
    [bob_chat] = (await store.chats_of(BOB, 10))[0]
    [alice_chat] = (await store.chats_of(ALICE, 10))[0]
    assert await store.unread(bob_chat, BOB) == 5
    assert await store.unread(alice_chat, ALICE) == 0  # her own messages
    # Bob answers: he has read everything up to his answer.
    reply = _message_id(START_MS + 10_000)
    await store.persist(_copies(reply, BOB, "ok"))
    [bob_chat] = (await store.chats_of(BOB, 10))[0]
    [alice_chat] = (await store.chats_of(ALICE, 10))[0]
    assert await store.unread(bob_chat, BOB) == 0
    assert await store.unread(alice_chat, ALICE) == 1


async def test_an_unread_count_read_before_the_message_row_counts_it_once_written(
    store: HistoryStore,
) -> None:
    """A message's chat-list rows and its own row come from different copies, which two
    history writers may write seconds apart: a chat list read in between must not go on
    counting from what it saw then."""
    message_id = _message_id(START_MS)
    copies = _copies(message_id, ALICE, "first")
    await store.persist([c for c in copies if not c.primary])  # Bob's chat-list row
    [bob_chat] = (await store.chats_of(BOB, 10))[0]
    assert bob_chat.last_message_id == message_id
    assert await store.unread(bob_chat, BOB) == 0  # the message itself is not written yet
    await store.persist([c for c in copies if c.primary])  # the sender's copy: the message row
    assert await store.unread(bob_chat, BOB) == 1


async def test_pages_cross_buckets_and_skip_empty_ones(store: HistoryStore) -> None:
    # Three messages 25 buckets apart: nothing between them is ever read.
    ids = [_message_id(START_MS + n * 25 * BUCKET_MS) for n in range(3)]
    await store.persist([c for i in ids for c in _copies(i, ALICE, "x")])
    page, more = await store.page(CHAT, before_id=0, after_id=0, limit=2)
    assert [m.message_id for m in page] == [ids[2], ids[1]]
    assert more
    rest, more = await store.page(CHAT, before_id=page[-1].message_id, after_id=0, limit=2)
    assert [m.message_id for m in rest] == [ids[0]]
    assert not more
    newer, _ = await store.page(CHAT, before_id=0, after_id=ids[0], limit=5)
    assert [m.message_id for m in newer] == [ids[1], ids[2]]
    far_future = 2**64 - 1  # the largest id a client can send
    assert (await store.page(CHAT, before_id=far_future, after_id=0, limit=5))[0]
    assert (await store.page(CHAT, before_id=0, after_id=far_future, limit=5)) == ([], False)


async def test_unread_counts_stop_at_the_cap(store: HistoryStore) -> None:
    batch = [
        c
        for n in range(UNREAD_CAP + 5)
        for c in _copies(_message_id(START_MS + n, n % 4096), ALICE, "x")
    ]
    await store.persist(batch)
    [bob_chat] = (await store.chats_of(BOB, 10))[0]
    assert await store.unread(bob_chat, BOB) == UNREAD_CAP


def _amendment(
    entry_id: int, sender: int, action: int, target: int, body: str = "", emoji: str = ""
) -> list[deliveries.Delivery]:
    return [
        deliveries.decode(c.value)
        for c in deliveries.encode(
            deliveries.Delivery(
                chat_id=CHAT,
                kind="direct",
                sender_id=sender,
                body=body,
                client_message_id=f"a{entry_id}",
                amendment=common_pb2.Amendment(
                    action=action,  # type: ignore[arg-type]
                    message_id=target,
                    message_sender_id=ALICE,
                    emoji=emoji,
                ),
            ),
            entry_id,
            [ALICE, BOB],
        )
    ]


async def test_amendments_apply_in_any_order_and_a_deletion_is_final(store: HistoryStore) -> None:
    # An hour ago: the entries' write times are in the past, as a replaying writer sees them.
    base = int(time.time() * 1000) - 3_600_000
    edited, deleted = _message_id(base), _message_id(base + 1)
    entries = [_message_id(base + 1000 * n) for n in range(1, 8)]
    # Every entry about a message arrives before the message itself (a writer replaying).
    await store.persist(
        _amendment(entries[0], ALICE, Amendment.EDITED, edited, body="first edit")
        + _amendment(entries[2], ALICE, Amendment.EDITED, edited, body="second edit")
        + _amendment(entries[1], BOB, Amendment.REACTION_ADDED, edited, emoji="+1")
        + _amendment(entries[4], BOB, Amendment.REACTION_ADDED, edited, emoji="ok")
        + _amendment(entries[3], BOB, Amendment.REACTION_REMOVED, edited, emoji="ok")
        + _amendment(entries[5], ALICE, Amendment.DELETED, deleted)
        + _amendment(entries[6], ALICE, Amendment.EDITED, deleted, body="resurrected?")
    )
    await store.persist(_copies(edited, ALICE, "original") + _copies(deleted, ALICE, "secret"))
    messages, _ = await store.page(CHAT, before_id=0, after_id=0, limit=10, viewer=BOB)
    by_id = {m.message_id: m for m in messages}
    kept = by_id[edited]
    assert (kept.body, kept.deleted, kept.edited_at_ms) == ("second edit", False, at_ms(entries[2]))
    # "ok" was added at entries[4], after its removal at entries[3]: the later toggle wins.
    assert sorted((r.emoji, r.count, r.mine) for r in kept.reactions) == [
        ("+1", 1, True),
        ("ok", 1, True),
    ]
    gone = by_id[deleted]
    assert (gone.body, gone.deleted, gone.edited_at_ms, gone.sender_id) == ("", True, 0, ALICE)
    # The chat list's preview is not the deleted text (it was the newest message).
    [chat] = (await store.chats_of(BOB, 10))[0]
    assert (chat.last_message_id, chat.last_preview) == (deleted, "")


def _group_records(
    message_id: int, sender: int, body: str, by_partition: dict[int, list[int]], **fields: object
) -> list[deliveries.Delivery]:
    entry = deliveries.Delivery(
        chat_id="g:500", kind="group", sender_id=sender, body=body, client_message_id=body
    )
    for name, value in fields.items():
        getattr(entry, name).CopyFrom(value)
    return [
        deliveries.decode(value)
        for _, _, value in deliveries.encode_group(entry, message_id, by_partition)
    ]


async def test_a_group_message_writes_the_group_once_and_each_chat_list_derives_it(
    store: HistoryStore,
) -> None:
    carol = 1003
    created, hello, removed, renamed, later, edit = (
        _message_id(START_MS + n * 1000) for n in range(6)
    )
    everyone = {0: [ALICE, carol], 1: [BOB]}
    made = common_pb2.ChatChange(
        action=common_pb2.ChatChange.CREATED, name="trio", user_ids=[ALICE, BOB, carol]
    )
    gone = common_pb2.ChatChange(
        action=common_pb2.ChatChange.REMOVED, name="trio", user_ids=[carol]
    )
    retitled = common_pb2.ChatChange(action=common_pb2.ChatChange.RENAMED, name="duo")
    amendment = Amendment(action=Amendment.EDITED, message_id=later, message_sender_id=BOB)
    rest = {0: [ALICE], 1: [BOB]}
    batches = [
        _group_records(created, ALICE, "alice created trio", everyone, change=made),
        _group_records(hello, ALICE, "hello", everyone),
        _group_records(removed, ALICE, "alice removed carol", everyone, change=gone),
        _group_records(renamed, ALICE, "alice renamed it duo", rest, change=retitled),
        _group_records(later, BOB, "after carol", rest),
        _group_records(edit, BOB, "after carol, edited", rest, amendment=amendment),
    ]
    # A message writes no member's row but the sender's (their read watermark).
    await store.persist(batches[1])
    rows = await store.db.execute(
        "SELECT user_id FROM chats_by_user WHERE user_id IN ?", ([ALICE, BOB, carol],)
    )
    assert [row.user_id for row in rows] == [ALICE]
    # In any order, twice.
    for batch in reversed(batches):
        await store.persist(batch)
    for batch in batches:
        await store.persist(batch)
    lists = {}
    for user in (ALICE, BOB, carol):
        [chat] = (await store.chats_of(user, 10))[0]
        [unread] = await store.unread_counts([chat], user)
        lists[user] = (chat.name, chat.last_message_id, chat.last_preview, unread)
    # Alice read up to what she sent (the rename); Bob up to his own message; Carol's list
    # ends at her removal, under the name it had then: she never read, so her window's three
    # entries are unread.
    assert lists == {
        ALICE: ("duo", later, "after carol, edited", 1),
        BOB: ("duo", later, "after carol, edited", 0),
        carol: ("trio", removed, "alice removed carol", 3),
    }
    messages, _ = await store.page("g:500", before_id=0, after_id=0, limit=10)
    assert [m.message_id for m in messages] == [later, renamed, removed, hello, created]


async def test_search_walks_many_buckets_newest_first_and_keeps_to_the_window(
    store: HistoryStore,
) -> None:
    # 40 messages, two per bucket over 20 buckets; every third holds "needle".
    ids = [_message_id(START_MS + (n // 2) * BUCKET_MS + (n % 2) * 1000) for n in range(40)]
    for n, message_id in enumerate(ids):
        body = f"hay {n} needle" if n % 3 == 0 else f"hay {n}"
        await store.persist(_copies(message_id, ALICE, body))
    matching = sorted((i for n, i in enumerate(ids) if n % 3 == 0), reverse=True)
    seen: list[int] = []
    before = 0
    while True:  # pages of 3: some end inside a bucket, some span several
        page, more = await store.search(CHAT, ["needle", "hay"], before_id=before, limit=3)
        seen += [m.message_id for m in page]
        if not more:
            break
        before = page[-1].message_id
    assert seen == matching
    # A window (a group member's) bounds both ends, whichever buckets it falls in.
    window = (ids[7], ids[30])
    page, more = await store.search(CHAT, ["needle"], before_id=0, limit=100, window=window)
    assert [m.message_id for m in page] == [i for i in matching if ids[7] <= i <= ids[30]]
    assert not more
    assert (await store.search(CHAT, ["absent"], before_id=0, limit=5)) == ([], False)
