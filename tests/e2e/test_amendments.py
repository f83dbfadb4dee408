"""Edits, deletions and reactions: entries of the chat's log, shown in place by history."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import grpc
import pytest

from chatlib.ids import smallest_id_at
from infra import apps, processes
from infra.layout import Layout
from infra.services import Context
from protos.chat.v1 import common_pb2, messaging_pb2
from tests.e2e.conftest import Admin, Clients, Stream, User, eventually
from tests.e2e.test_groups import create, drain, md
from tests.e2e.test_read_marks import next_receipt

Amendment = common_pb2.Amendment
THUMBS, HEART = "\N{THUMBS UP SIGN}", "\N{HEAVY BLACK HEART}"


async def message_in_history(user: User, chat_id: str, message_id: int) -> dict[str, Any]:
    [found] = [m for m in await user.history(chat_id) if m["message_id"] == str(message_id)]
    return found


async def amendments(stream: Stream, chat_id: str, seconds: float = 3.0) -> list[Any]:
    return [m for m in await drain(stream, chat_id, seconds) if m.HasField("amendment")]


async def test_an_edit_and_a_delete_reach_every_member_and_history(clients: Clients) -> None:
    alice, bob, carol = [await clients.user(n) for n in ("al", "bo", "ca")]
    group = await create(clients, alice, "edits", bob, carol)
    chat = group.chat_id
    streams = {u.user_id: await clients.subscribe(u) for u in (alice, bob, carol)}
    for stream in streams.values():
        await stream.caught_up()
    first = await bob.send(chat, "helo")
    second = await bob.send(chat, "something regrettable")
    # Bob fixes his typo (HTTP, retried with the same key: one entry).
    path = f"/v1/chats/{chat}/messages/{first}"
    status, edited = await bob.call("PATCH", path, {"body": "hello", "client_request_id": "e1"})
    assert status == 201, edited
    status, again = await bob.call("PATCH", path, {"body": "hello", "client_request_id": "e1"})
    assert (status, again["message_id"], again["duplicate"]) == (200, edited["message_id"], True)
    # Carol (a plain member) may neither edit nor delete Bob's message; Alice (the owner) may
    # delete it.
    status, problem = await carol.call("PATCH", path, {"body": "hijacked"})
    assert status == 403, problem
    status, problem = await carol.call("DELETE", f"/v1/chats/{chat}/messages/{second}")
    assert status == 403, problem
    status, deleted = await alice.call("DELETE", f"/v1/chats/{chat}/messages/{second}")
    assert status == 201, deleted
    # Every member's stream gets both entries, in the chat's order, once each.
    for user_id, stream in streams.items():
        got = await amendments(stream, chat)
        seen = [(m.amendment.action, m.amendment.message_id, m.body) for m in got]
        assert seen == [
            (Amendment.EDITED, first, "hello"),
            (Amendment.DELETED, second, ""),
        ], user_id
        assert [m.message_id for m in got] == [
            int(edited["message_id"]),
            int(deleted["message_id"]),
        ]
        assert got[1].sender_id == alice.user_id
    # History shows the current state: the edit in place, the deletion as a tombstone.

    async def settled() -> list[dict[str, Any]] | None:
        page = [m for m in await carol.history(chat) if "change" not in m]
        return page if page and page[0].get("deleted") else None

    page = await eventually(settled)
    assert [m["message_id"] for m in page] == [str(second), str(first)]
    assert (page[1]["body"], page[1]["edited_at_ms"] > 0) == ("hello", True)
    assert (page[0]["body"], page[0]["deleted"], page[0]["sender_id"]) == (
        "",
        True,
        str(bob.user_id),
    )
    # The preview no longer holds the deleted text either.
    [row] = [c for c in await carol.chats() if c["chat_id"] == chat]
    assert row["last_preview"] == ""
    # A deleted message takes no edit and no reaction.
    status, problem = await bob.call(
        "PATCH", f"/v1/chats/{chat}/messages/{second}", {"body": "undo"}
    )
    assert status == 409, problem
    status, problem = await bob.call(
        "PUT", f"/v1/chats/{chat}/messages/{second}/reactions/{THUMBS}"
    )
    assert status == 409, problem


async def test_edits_need_the_sender_and_the_window(clients: Clients, admin: Admin) -> None:
    alice, bob, chat = await clients.pair()
    message = await alice.send(chat, "typo")
    stub = clients.stub(bob.messaging_server)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.EditMessage(
            messaging_pb2.EditMessageRequest(
                chat_id=chat, message_id=message, body="x", client_request_id="k"
            ),
            metadata=md(bob),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad_id in ("1", str(2**63 + 5)):
        status, problem = await alice.call(
            "PATCH", f"/v1/chats/{chat}/messages/{bad_id}", {"body": "x"}
        )
        assert status == 404, problem
    status, problem = await alice.call("PATCH", f"/v1/chats/{chat}/messages/{message}", {})
    assert status == 400, problem
    await admin.change("messages", edit_window_seconds=1)
    await asyncio.sleep(1.5)
    status, problem = await alice.call(
        "PATCH", f"/v1/chats/{chat}/messages/{message}", {"body": "too late"}
    )
    assert (status, "1 seconds" in problem["detail"]) == (409, True), problem


async def test_reactions_count_right_under_concurrent_toggles(clients: Clients) -> None:
    owner = await clients.user("ow")
    people = [await clients.user("re") for _ in range(12)]
    group = await create(clients, owner, "reactions", *people)
    chat = group.chat_id
    watching = await clients.subscribe(owner)
    await watching.caught_up()
    message = await owner.send(chat, "react to this")
    path = f"/v1/chats/{chat}/messages/{message}/reactions"

    async def react(user: User, emoji: str, method: str = "PUT") -> None:
        status, body = await user.call(
            method, f"{path}/{emoji}", None, **{"Idempotency-Key": key()}
        )
        assert status == 201, body

    # Everyone adds a thumb at once (some twice), half also a heart; then four take the
    # thumb back, all concurrently.
    await asyncio.gather(
        *(react(p, THUMBS) for p in people),
        *(react(p, THUMBS) for p in people[:3]),
        *(react(p, HEART) for p in people[::2]),
    )
    await asyncio.gather(*(react(p, THUMBS, "DELETE") for p in people[:4]))
    want = {THUMBS: 8, HEART: 6}

    async def counted() -> dict[str, int] | None:
        page = [m for m in await people[0].history(chat) if m["message_id"] == str(message)]
        if not page:
            return None  # the history writer has not written it yet
        counts = {r["emoji"]: r["count"] for r in page[0].get("reactions", [])}
        return counts if counts == want else None

    assert await eventually(counted) == want
    mine = {
        r["emoji"]: r["mine"]
        for r in (await message_in_history(people[0], chat, message))["reactions"]
    }
    assert mine == {THUMBS: False, HEART: True}
    # The entries on a member's stream, applied in order, give the same counts.
    state: set[tuple[int, str]] = set()
    for entry in await amendments(watching, chat, 5.0):
        pair = (entry.sender_id, entry.amendment.emoji)
        if entry.amendment.action == Amendment.REACTION_ADDED:
            state.add(pair)
        else:
            state.discard(pair)
    assert Counter(emoji for _, emoji in state) == want
    status, problem = await people[0].call("PUT", f"{path}/two%20words")
    assert status == 400, problem


async def test_a_resume_replays_amendments_in_order(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    stream = await clients.subscribe(bob)
    await stream.caught_up()
    message = await alice.send(chat, "v1")
    [event] = await stream.messages(1)
    cursor = event.cursor
    for body in ("v2", "v3"):
        status, _ = await alice.call(
            "PATCH", f"/v1/chats/{chat}/messages/{message}", {"body": body}
        )
        assert status == 201
    status, _ = await bob.call("PUT", f"/v1/chats/{chat}/messages/{message}/reactions/{HEART}")
    assert status == 201
    resumed = await clients.subscribe(bob, cursor)
    replayed = await resumed.messages(3)
    assert [(e.message.amendment.action, e.message.body) for e in replayed] == [
        (Amendment.EDITED, "v2"),
        (Amendment.EDITED, "v3"),
        (Amendment.REACTION_ADDED, ""),
    ]


async def test_delivery_receipts_give_one_tick_and_read_two(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    watching = await clients.subscribe(alice)
    await watching.caught_up()
    sent = [await alice.send(chat, f"m{n}") for n in range(3)]
    status, _ = await bob.post(f"/v1/chats/{chat}/delivered", {"message_id": str(sent[2])})
    assert status == 204
    receipt = await next_receipt(watching)
    assert (receipt.user_id, receipt.delivered_up_to, receipt.read_up_to) == (
        bob.user_id,
        sent[2],
        0,
    )
    status, _ = await bob.post(f"/v1/chats/{chat}/read", {"message_id": str(sent[1])})
    assert status == 204
    receipt = await next_receipt(watching)
    assert (receipt.read_up_to, receipt.delivered_up_to) == (sent[1], sent[1])

    async def marks() -> tuple[list[str], list[str]] | None:
        status, body = await alice.get(f"/v1/chats/{chat}/messages/{sent[2]}/readers")
        assert status == 200, body
        delivered = [r["user_id"] for r in body["delivered"]]
        return (body["readers"], delivered) if delivered else None

    assert await eventually(marks) == ([], [str(bob.user_id)])


def key() -> str:
    return uuid.uuid4().hex


async def test_amendments_need_no_history_writer(clients: Clients) -> None:
    """Edits, deletions and reactions are checked against what the send path recorded, not
    against history's table: they are answered while the history writer is down, and history
    applies them once it is back. An id the chat never had is refused at once."""
    alice, bob, carol = [await clients.user(n) for n in ("wal", "wbo", "wca")]
    direct = await alice.open_chat(bob)
    group = (await create(clients, alice, "no writer", bob, carol)).chat_id
    watching = await clients.subscribe(bob)
    await watching.caught_up()
    ctx = Context(Layout.from_env())
    pidfile = ctx.layout.pidfile("history-writer")
    assert processes.stop(pidfile, grace=15) is not None, "no history writer was running"
    try:
        amended: dict[str, tuple[int, int]] = {}
        for chat, reactor in ((direct, bob), (group, carol)):
            edited = await alice.send(chat, "helo")
            doomed = await alice.send(chat, "oops")
            for user, method, path, body in (
                (alice, "PATCH", f"/v1/chats/{chat}/messages/{edited}", {"body": "hello"}),
                (reactor, "PUT", f"/v1/chats/{chat}/messages/{edited}/reactions/{THUMBS}", None),
                (alice, "DELETE", f"/v1/chats/{chat}/messages/{doomed}", None),
            ):
                status, answer = await user.call(method, path, body)
                assert status == 201, (chat, method, answer)
            # The deletion is known at once: no edit or reaction after it.
            status, problem = await reactor.call(
                "PUT", f"/v1/chats/{chat}/messages/{doomed}/reactions/{HEART}"
            )
            assert status == 409, problem
            amended[chat] = (edited, doomed)
        # Bob's stream has the entries already: the live path never waits for the writer.
        got = await amendments(watching, direct)
        assert [(m.amendment.action, m.amendment.message_id) for m in got] == [
            (Amendment.EDITED, amended[direct][0]),
            (Amendment.REACTION_ADDED, amended[direct][0]),
            (Amendment.DELETED, amended[direct][1]),
        ]
        # Fresh ids this chat does not hold (another chat's, one from the future) are not
        # looked for again and again: NOT_FOUND, well within a client's patience.
        elsewhere = await bob.send(direct, "not in the group")
        future = smallest_id_at(int(time.time() * 1000) + 5_000)
        for wrong in (elsewhere, future):
            async with asyncio.timeout(3):
                status, problem = await carol.call(
                    "PATCH", f"/v1/chats/{group}/messages/{wrong}", {"body": "x"}
                )
                assert status == 404, problem
                status, problem = await bob.call(
                    "PUT", f"/v1/chats/{group}/messages/{wrong}/reactions/{THUMBS}"
                )
                assert status == 404, problem
    finally:
        await asyncio.to_thread(apps.start, ctx, {"history-writer"})

    # History applies every amendment once the writer is back.
    for chat, (edited, doomed) in amended.items():

        async def applied(
            chat: str = chat, edited: int = edited, doomed: int = doomed
        ) -> dict[int, dict[str, Any]] | None:
            # Each amendment is a record of its own, the reaction perhaps in another partition
            # than the deletion (the reactor's): the writer may apply them in either order.
            found = {int(m["message_id"]): m for m in await bob.history(chat)}
            deleted = found.get(doomed, {}).get("deleted")
            return found if deleted and found.get(edited, {}).get("reactions") else None

        by_id = await eventually(applied, seconds=60)
        assert (by_id[edited]["body"], by_id[edited]["edited_at_ms"] > 0) == ("hello", True)
        assert [(r["emoji"], r["count"]) for r in by_id[edited]["reactions"]] == [(THUMBS, 1)]
        assert (by_id[doomed]["deleted"], by_id[doomed]["body"]) == (True, "")
