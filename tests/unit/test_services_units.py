"""Service pieces that need no network: cursors, stream back-pressure, passwords, migrations."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import pytest

import history
import messaging
from bff import passwords
from bff.passwords import hash_password, verify_password
from chatlib import migrations
from chatlib.chat_ids import check_chat_id, direct_chat_id
from chatlib.errors import InvalidArgument
from chatlib.partitioning import OPEN, Stretch
from infra import access
from messaging.streams.cursor import Cursor, Resume, resume_from
from messaging.streams.registry import (
    LiveEvent,
    LiveStream,
    RecentIds,
    Redirect,
    StreamRegistry,
    message_event,
)
from protos.chat.v1 import envelope_pb2


def test_cursors_round_trip_and_order() -> None:
    cursor = Cursor(3, 1234)
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor(3, 5) < Cursor(3, 6)


@pytest.mark.parametrize("raw", ["", "3.4", "v1.x.4", "v1.3", "v1.-1.4", "v2.3.4"])
def test_foreign_cursors_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="resume_cursor"):
        Cursor.decode(raw)


def test_direct_chat_ids_are_deterministic_and_checked() -> None:
    assert direct_chat_id(9, 2) == direct_chat_id(2, 9) == "d:2:9"
    check_chat_id("d:2:9")
    for bad in ("", "x", "d:2", "d:a:b", "d:" + "1" * 30 + ":2"):
        with pytest.raises(InvalidArgument):
            check_chat_id(bad)


def _event(offset: int, partition: int = 0) -> LiveEvent:
    delivery = envelope_pb2.Delivery(message_id=offset + 1, chat_id="d:7:8", recipient_id=7)
    return message_event(Cursor(partition, offset), delivery)


async def test_a_full_stream_overflows_without_growing_or_touching_others() -> None:
    registry = StreamRegistry()
    slow, fast = LiveStream(7, 0, capacity=3), LiveStream(7, 0, capacity=100)
    registry.add(slow)
    registry.add(fast)
    for offset in range(10):
        assert registry.publish(7, _event(offset)) == 2
    assert slow.overflowed
    assert len(slow.queue) == 3
    assert len(fast.queue) == 10
    assert not fast.overflowed
    registry.remove(slow)
    registry.remove(fast)
    assert registry.count() == 0
    assert registry.publish(7, _event(11)) == 0


async def test_a_moved_partition_redirects_only_its_streams_after_what_was_queued() -> None:
    registry = StreamRegistry()
    moving, staying = LiveStream(7, 3, capacity=10), LiveStream(8, 4, capacity=10)
    registry.add(moving)
    registry.add(staying)
    registry.publish(7, _event(1, 3))
    assert registry.redirect(3, Redirect("m2", "127.0.0.1:7102")) == 1
    assert registry.redirect(3, Redirect("m2", "127.0.0.1:7102")) == 0  # once per stream
    registry.publish(7, _event(2, 3))  # after the move: not this server's to deliver
    assert moving.redirect == Redirect("m2", "127.0.0.1:7102")
    assert len(moving.queue) == 1
    assert moving.wake.is_set()
    assert staying.redirect is None


async def test_added_partitions_move_the_streams_of_moved_users_only() -> None:
    registry = StreamRegistry()
    moved, stays = LiveStream(7, 3, capacity=10), LiveStream(8, 4, capacity=10)
    registry.add(moved)
    registry.add(stays)
    # The moved user's records of the new partition are not this stream's: it resumes there.
    registry.publish(7, _event(5, 11))
    registry.publish(7, _event(6, 3))
    assert [e.cursor for e in moved.queue] == [Cursor(3, 6)]
    new_partition = {7: 11, 8: 4}
    assert registry.rehome(new_partition.__getitem__, lambda p: Redirect(f"m{p}", "t")) == 1
    assert moved.redirect == Redirect("m11", "t")
    assert stays.redirect is None
    assert registry.rehome(new_partition.__getitem__, lambda p: Redirect(f"m{p}", "t")) == 0


def _trail(*stretches: tuple[int, int, int]) -> list[Stretch]:
    return [Stretch(*s) for s in stretches]


def test_a_resume_reads_the_rest_of_each_old_partition_then_the_new_one() -> None:
    # Partition 3 until offset 100, then 7 from offset 40, then 19 from 0 (two growths).
    trail = _trail((3, 0, 100), (7, 40, 90), (19, 0, OPEN))
    assert resume_from(trail, Cursor(3, 49)) == Resume(_trail((3, 50, 100), (7, 40, 90)), -1)
    # A cursor at or past the old partition's end (a caught-up event's): nothing left there.
    assert resume_from(trail, Cursor(3, 99)) == Resume(_trail((7, 40, 90)), -1)
    assert resume_from(trail, Cursor(3, 150)) == Resume(_trail((7, 40, 90)), -1)
    assert resume_from(trail, Cursor(7, 60)) == Resume(_trail((7, 61, 90)), -1)
    assert resume_from(trail, Cursor(19, 5)) == Resume([], 5)
    # Before a stretch began: that partition held none of this user's records then.
    assert resume_from(trail, Cursor(7, 20)) is None
    assert resume_from(trail, Cursor(5, 1)) is None
    # A user whom the growth did not move: one stretch, resumed as ever.
    assert resume_from(_trail((3, 0, OPEN)), Cursor(3, 120)) == Resume([], 120)
    assert resume_from(_trail((3, 0, OPEN)), Cursor(3, -1)) == Resume([], -1)
    # A new partition that is not a new number: the current stretch starts past the old end.
    assert resume_from(_trail((9, 0, 30), (2, 55, OPEN)), Cursor(9, 10)) == Resume(
        _trail((9, 11, 30)), 54
    )


def test_passwords_verify_only_themselves() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert not verify_password("correct horse", "not-a-hash")
    assert hash_password("correct horse") != stored  # salted


@pytest.fixture
def scrypt_held_until_loop_turns(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """scrypt that returns only once the event loop has run a callback meanwhile: on the
    loop's own thread it would wait for itself and fail."""
    turned = threading.Event()
    real = hashlib.scrypt

    def held(*args: Any, **kwargs: Any) -> bytes:
        if not turned.wait(timeout=10):
            raise AssertionError("scrypt ran on the event loop: nothing else could run")
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", held)
    return turned


async def test_password_work_leaves_the_event_loop_free(
    scrypt_held_until_loop_turns: threading.Event,
) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, scrypt_held_until_loop_turns.set)
    stored = await passwords.hashed("correct horse")
    assert await passwords.verified("correct horse", stored)
    assert not await passwords.verified("correct horsf", stored)
    # An unknown user is answered no after the same work, never yes.
    assert not await passwords.verified("correct horse", None)


def test_each_owner_creates_its_own_tables_in_numbered_migrations() -> None:
    created: dict[str, set[str]] = {}
    for owner, folder in (("history", history.MIGRATIONS), ("messaging", messaging.MIGRATIONS)):
        found = migrations.load(folder)
        assert [m.version for m in found] == list(range(1, len(found) + 1)), owner
        created[owner] = {
            s.split()[5]
            for m in found
            for s in m.statements
            if s.upper().startswith("CREATE TABLE IF NOT EXISTS")
        }
    assert created["messaging"] == {
        "chats",
        "group_members",
        "blocks",
        "attachments",
        "attachments_by_message",
    }
    assert {"users", "users_by_name", "messages_by_chat", "chats_by_user"} <= created["history"]
    assert not created["history"] & created["messaging"], "a table has one owner"
    # The cluster's roles may write exactly the tables their owner creates (a table left out
    # is refused there, and only there).
    assert {owner: set(tables) for owner, tables in access.CASSANDRA_WRITES.items()} == created


def test_recent_ids_let_each_message_through_once_and_stay_bounded() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.first_time(i) for i in (1, 2, 1, 3, 4)] == [True, True, False, True, True]
    assert recent.first_time(1)  # the oldest was forgotten once a fourth id came
    assert not recent.first_time(4)


async def test_a_stopping_server_closes_every_stream_after_what_was_queued() -> None:
    registry = StreamRegistry()
    one, other = LiveStream(7, 3, capacity=10), LiveStream(8, 4, capacity=10)
    registry.add(one)
    registry.add(other)
    registry.publish(7, _event(1, 3))
    assert registry.close_all() == 2
    assert registry.close_all() == 0  # once per stream
    for stream in (one, other):
        assert stream.closing
        assert stream.wake.is_set()
    assert len(one.queue) == 1  # what was queued is still sent first
