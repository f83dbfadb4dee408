"""Marking read: unread counts go down on every device, the watermark never moves back."""

from __future__ import annotations

import contextlib
from typing import Any

import grpc
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import Clients, User, eventually


async def _unread(user: User, chat_id: str) -> int | None:
    """The chat's unread count in the user's list; None while the list lacks the chat."""
    rows = [c for c in await user.chats() if c["chat_id"] == chat_id]
    return int(rows[0]["unread_count"]) if rows else None


async def _settles_at(user: User, chat_id: str, count: int) -> None:
    async def reached() -> bool:
        return await _unread(user, chat_id) == count

    await eventually(reached)


async def test_reading_on_one_device_clears_unread_on_the_others(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    laptop = await clients.subscribe(bob)
    await laptop.caught_up()
    sent = [await alice.send(chat, f"m{n}") for n in range(3)]
    await _settles_at(bob, chat, 3)
    # Bob's phone reads up to the second message (HTTP); his laptop is told.
    status, _ = await bob.post(f"/v1/chats/{chat}/read", {"message_id": str(sent[1])})
    assert status == 204
    receipt = await next_receipt(laptop)
    assert (receipt.chat_id, receipt.user_id, receipt.read_up_to) == (chat, bob.user_id, sent[1])
    await _settles_at(bob, chat, 1)
    # An older mark (a slow device) does not move the watermark back.
    status, _ = await bob.post(f"/v1/chats/{chat}/read", {"message_id": str(sent[0])})
    assert status == 204
    await next_receipt(laptop)
    await _settles_at(bob, chat, 1)
    # Over gRPC, up to the newest: nothing unread.
    await clients.stub(bob.messaging_server).MarkRead(
        messaging_pb2.MarkReadRequest(chat_id=chat, message_id=sent[2]),
        metadata=(("authorization", f"Bearer {bob.token}"),),
        timeout=10,
    )
    await _settles_at(bob, chat, 0)
    # Alice's count was never touched by Bob's reading.
    assert await _unread(alice, chat) == 0


async def next_receipt(stream: Any) -> messaging_pb2.Receipt:
    """The stream's next receipt event (other events are skipped)."""
    while True:
        event = await stream.next()
        if event.WhichOneof("event") == "receipt":
            receipt: messaging_pb2.Receipt = event.receipt
            return receipt


async def test_read_marks_refuse_strangers_and_unknown_chats(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    carol = await clients.user("ca")
    message = await alice.send(chat, "hi")
    status, problem = await carol.post(f"/v1/chats/{chat}/read", {"message_id": str(message)})
    assert status == 403, problem
    status, problem = await bob.post("/v1/chats/g:1/read", {"message_id": str(message)})
    assert status == 404, problem
    status, problem = await bob.post(f"/v1/chats/{chat}/read", {"message_id": "x"})
    assert status == 400, problem
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.stub(bob.messaging_server).MarkRead(
            messaging_pb2.MarkReadRequest(chat_id=chat, message_id=0),
            metadata=(("authorization", f"Bearer {bob.token}"),),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A mark from the future means "everything up to now", not "everything ever".
    status, _ = await bob.post(f"/v1/chats/{chat}/read", {"message_id": "18446744073709551615"})
    assert status == 204
    await _settles_at(bob, chat, 0)
    await alice.send(chat, "after the mark")
    await _settles_at(bob, chat, 1)


async def test_other_members_see_coalesced_receipts_and_who_read(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    watching = await clients.subscribe(alice)
    await watching.caught_up()
    sent = [await alice.send(chat, f"m{n}") for n in range(5)]
    for message_id in sent:  # bob reads them one by one, quickly
        status, _ = await bob.post(f"/v1/chats/{chat}/read", {"message_id": str(message_id)})
        assert status == 204
    receipts: list[messaging_pb2.Receipt] = []
    with contextlib.suppress(TimeoutError):
        while True:
            event = await watching.next(3.0)
            if event.WhichOneof("event") == "receipt":
                receipts.append(event.receipt)
    # Coalesced: not one per message, and the newest mark arrives.
    assert 1 <= len(receipts) <= 2, receipts
    assert (receipts[-1].user_id, receipts[-1].read_up_to) == (bob.user_id, sent[-1])

    async def readers_of(message_id: int) -> list[str] | None:
        status, body = await alice.get(f"/v1/chats/{chat}/messages/{message_id}/readers")
        assert status == 200, body
        found = [r["user_id"] for r in body["readers"]]
        return found or None

    assert await eventually(lambda: readers_of(sent[2])) == [str(bob.user_id)]
    carol = await clients.user("ca")
    status, problem = await carol.get(f"/v1/chats/{chat}/messages/{sent[2]}/readers")
    assert status == 403, problem


async def test_the_chat_list_pages_newest_first_past_any_limit(clients: Clients) -> None:
    me = await clients.user("pg")
    peers = [await clients.user("pp") for _ in range(5)]
    chats = [await me.open_chat(peer) for peer in peers]
    # Written in an order unlike the chats' ids: the newest message decides the order.
    for index in (3, 0, 4, 1, 2):
        await peers[index].send(chats[index], f"to {index}")
    newest_first = [chats[i] for i in (2, 1, 4, 0, 3)]

    async def pages() -> list[str] | None:
        seen: list[str] = []
        cursor = ""
        while True:
            query = f"/v1/chats?limit=2{'&cursor=' + cursor if cursor else ''}"
            status, body = await me.get(query)
            assert status == 200, body
            seen += [c["chat_id"] for c in body["chats"]]
            if not body["next_cursor"]:
                return seen if seen == newest_first else None
            cursor = body["next_cursor"]

    assert await eventually(pages) == newest_first
    status, problem = await me.get("/v1/chats?cursor=nonsense")
    assert status == 400, problem


async def test_a_former_group_member_still_marks_what_they_could_read(clients: Clients) -> None:
    owner, leaver = await clients.user("ow"), await clients.user("lv")
    status, group = await owner.post(
        "/v1/groups", {"name": "readers", "member_ids": [str(leaver.user_id)]}
    )
    assert status == 201, group
    chat = group["chat_id"]
    message = await owner.send(chat, "before you go")
    await _settles_at(leaver, chat, 2)  # the group's creation and the message
    status, _ = await leaver.call("DELETE", f"/v1/groups/{chat}/members/{leaver.user_id}")
    assert status == 200
    status, problem = await leaver.post(f"/v1/chats/{chat}/read", {"message_id": str(message)})
    assert status == 204, problem
    await _settles_at(leaver, chat, 0)
