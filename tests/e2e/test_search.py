"""Search within a chat, over HTTP and over gRPC: whole words, case and accents ignored, every
word of the query in the message; newest first and paged; edits match by their current text
only, deletions never; a group member finds only what their window shows; strangers and bad
queries are refused with the reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import grpc
import pytest

from protos.chat.v1 import history_pb2, history_pb2_grpc
from tests.e2e.conftest import BFF, Clients, User, eventually

HISTORY = "127.0.0.1:7201"


async def _search(user: User, chat: str, q: str, **query: str) -> tuple[int, Any]:
    params = "".join(f"&{k}={v}" for k, v in query.items())
    return await user.get(f"/v1/chats/{chat}/search?q={quote(q)}{params}")


async def _found(user: User, chat: str, q: str, want: int) -> list[str]:
    """The bodies a search finds once the history writer has stored ``want`` of them."""

    async def check() -> tuple[list[str]] | None:
        status, page = await _search(user, chat, q)
        assert status == 200, page
        bodies = [m["body"] for m in page["messages"]]
        return (bodies,) if len(bodies) == want else None

    (found,) = await eventually(check)
    return list(found)


async def test_words_match_whole_ignoring_case_and_accents(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    for text in ["Lunch at the Café?", "cafe closed today", "meet tomorrow", "tomorrow's lunch"]:
        await alice.send(chat, text)
    await bob.send(chat, "cafés and cats")
    await bob.send(chat, "CAFE, again!")

    assert await _found(bob, chat, "CAFÉ", 3) == [
        "CAFE, again!",
        "cafe closed today",
        "Lunch at the Café?",
    ]
    assert await _found(alice, chat, "lunch TOMORROW", 1) == ["tomorrow's lunch"]
    assert await _found(alice, chat, "cat", 0) == []  # whole words: "cats" is not "cat"
    assert await _found(alice, chat, "cafés", 1) == ["cafés and cats"]
    status, page = await _search(alice, chat, "?!")  # no word at all: nothing to find
    assert (status, page) == (200, {"messages": [], "has_more": False})


async def test_edits_and_deletions_change_what_is_found(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    edited = await alice.send(chat, "see you on monday")
    deleted = await alice.send(chat, "monday works for me")
    await _found(bob, chat, "monday", 2)

    path = f"/v1/chats/{chat}/messages"
    status, body = await alice.call("PATCH", f"{path}/{edited}", {"body": "see you on friday"})
    assert status == 201, body
    status, body = await alice.call("DELETE", f"{path}/{deleted}")
    assert status == 201, body

    assert await _found(bob, chat, "friday", 1) == ["see you on friday"]
    assert await _found(bob, chat, "monday", 0) == []
    status, page = await _search(bob, chat, "friday")
    assert page["messages"][0]["edited_at_ms"] > 0
    assert page["messages"][0]["message_id"] == str(edited)


async def test_pages_run_newest_first_without_gaps_or_repeats(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    sent = [await alice.send(chat, f"apple number {n}") for n in range(25)]
    await alice.send(chat, "a pear")

    async def stored() -> bool:
        status, page = await _search(bob, chat, "apple", limit="30")
        return status == 200 and len(page["messages"]) == 25

    await eventually(stored)
    seen: list[int] = []
    before: dict[str, str] = {}
    while True:
        status, page = await _search(bob, chat, "number APPLE", limit="10", **before)
        assert status == 200, page
        seen += [int(m["message_id"]) for m in page["messages"]]
        if not page["has_more"]:
            break
        before = {"before": page["messages"][-1]["message_id"]}
    assert seen == sorted(sent, reverse=True)


async def test_a_group_member_finds_only_what_their_window_shows(clients: Clients) -> None:
    alice = await clients.user("owner")
    bob = await clients.user("member")
    carol = await clients.user("late")
    status, group = await alice.post(
        "/v1/groups", {"name": "plans", "member_ids": [str(bob.user_id)]}
    )
    assert status == 201, group
    chat = group["chat_id"]
    await alice.send(chat, "the secret plan")
    status, body = await alice.post(
        f"/v1/groups/{chat}/members", {"user_ids": [str(carol.user_id)]}
    )
    assert status == 200, body
    await alice.send(chat, "plan b for everyone")
    assert await _found(bob, chat, "plan", 2) == ["plan b for everyone", "the secret plan"]
    assert await _found(carol, chat, "plan", 1) == ["plan b for everyone"]

    status, body = await alice.call("DELETE", f"/v1/groups/{chat}/members/{carol.user_id}")
    assert status == 200, body
    await alice.send(chat, "plan c, without carol")
    await _found(bob, chat, "plan", 3)
    assert await _found(carol, chat, "plan", 1) == ["plan b for everyone"]


async def test_bad_searches_name_the_problem(clients: Clients) -> None:
    alice, _, chat = await clients.pair()
    stranger = await clients.user("stranger")
    status, body = await _search(stranger, chat, "hello")
    assert status == 403, body
    assert "not a member" in body["detail"], body
    status, body = await _search(alice, "d:1:2", "hello")
    assert status == 404, body
    status, body = await alice.get(f"/v1/chats/{chat}/search")
    assert status == 400, body
    assert "'q'" in body["detail"], body
    status, body = await _search(alice, chat, "")
    assert status == 400, body
    assert "'q'" in body["detail"], body
    status, body = await _search(alice, chat, "x" * 201)
    assert status == 400, body
    assert "200" in body["detail"], body
    status, body = await _search(alice, chat, "x", limit="0")
    assert status == 400, body
    assert "limit" in body["detail"], body
    status, body = await _search(alice, chat, "x", before="abc")
    assert status == 400, body
    assert "before" in body["detail"], body
    async with alice.http.get(f"{BFF}/v1/chats/{chat}/search?q=x") as response:
        assert response.status == 401  # no token


async def test_search_over_grpc(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    await alice.send(chat, "grpc finds this")
    await alice.send(chat, "and not that")
    await _found(bob, chat, "finds", 1)
    async with grpc.aio.insecure_channel(HISTORY) as channel:
        history = history_pb2_grpc.HistoryServiceStub(channel)
        reply = await history.SearchMessages(
            history_pb2.SearchMessagesRequest(chat_id=chat, query="Finds"),
            metadata=(("authorization", f"Bearer {bob.token}"),),
        )
        assert [m.body for m in reply.messages] == ["grpc finds this"]
        assert not reply.has_more
        for request, code in [
            (history_pb2.SearchMessagesRequest(chat_id=chat), grpc.StatusCode.INVALID_ARGUMENT),
            (
                history_pb2.SearchMessagesRequest(chat_id=chat, query="x" * 201),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                history_pb2.SearchMessagesRequest(chat_id="d:1:2", query="x"),
                grpc.StatusCode.NOT_FOUND,
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await history.SearchMessages(
                    request, metadata=(("authorization", f"Bearer {bob.token}"),)
                )
            assert refused.value.code() == code, refused.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await history.SearchMessages(history_pb2.SearchMessagesRequest(chat_id=chat, query="x"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
