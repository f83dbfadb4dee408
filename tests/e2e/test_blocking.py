"""Blocking, over HTTP and over gRPC: a blocked user can neither open a direct chat with the
blocker nor send in one, and is told exactly what a stranger is told; the blocker cannot send
there either until they unblock; groups are not touched; the list is served; bad requests
name the problem. The blocker and the blocked are on different messaging servers, so the
block holds on a server other than the one that took it, from the moment it is answered."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, Clients, User, eventually


async def _apart(clients: Clients) -> tuple[User, User]:
    """Two new users whose calls go to different messaging servers."""
    first = await clients.user("blocker")
    for _ in range(40):
        other = await clients.user("blocked")
        if other.messaging_server != first.messaging_server:
            return first, other
    raise AssertionError("every user landed on one server")


async def _send(user: User, chat: str) -> tuple[int, Any]:
    body = {"client_message_id": uuid.uuid4().hex, "body": "hello?"}
    return await user.post(f"/v1/chats/{chat}/messages", body)


async def test_a_block_over_http(clients: Clients) -> None:
    alice, bob = await _apart(clients)
    carol = await clients.user("stranger")
    chat = await alice.open_chat(bob)
    status, stranger = await _send(carol, chat)
    assert status == 403, stranger

    for _ in range(2):  # blocking twice changes nothing
        status, body = await alice.call("PUT", f"/v1/blocks/{bob.user_id}")
        assert status == 204, body
    status, listed = await alice.get("/v1/blocks")
    assert status == 200, listed
    assert [b["user_id"] for b in listed["blocked"]] == [str(bob.user_id)]
    assert listed["blocked"][0]["blocked_at_ms"] > 0
    assert (await bob.get("/v1/blocks"))[1] == {"blocked": []}

    # Bob is told what a stranger is told, sending or opening the chat.
    status, refused = await _send(bob, chat)
    assert (status, refused["detail"]) == (403, stranger["detail"]), refused
    status, refused = await bob.post("/v1/chats/direct", {"peer_id": str(alice.user_id)})
    assert (status, refused["detail"]) == (403, stranger["detail"]), refused
    # Alice may look at the chat, not write in it while she blocks him.
    assert (await alice.post("/v1/chats/direct", {"peer_id": str(bob.user_id)}))[0] == 200
    status, own = await _send(alice, chat)
    assert status == 403
    assert "unblock" in own["detail"]
    # A group with both of them is not touched.
    status, group = await alice.post(
        "/v1/groups", {"name": "both", "member_ids": [str(bob.user_id), str(carol.user_id)]}
    )
    assert status == 201, group
    assert (await _send(bob, group["chat_id"]))[0] == 201

    for _ in range(2):
        status, body = await alice.call("DELETE", f"/v1/blocks/{bob.user_id}")
        assert status == 204, body
    assert (await alice.get("/v1/blocks"))[1] == {"blocked": []}
    assert (await _send(bob, chat))[0] == 201
    assert (await _send(alice, chat))[0] == 201

    async def stored() -> list[str] | None:  # the history writer follows a moment behind
        found = [m["body"] for m in await alice.history(chat)]
        return found if len(found) >= 2 else None

    assert await eventually(stored) == ["hello?", "hello?"]  # only the two after the unblock


async def test_blocking_refuses_what_it_must(clients: Clients) -> None:
    alice = await clients.user("blocker")
    for path, status, words in (
        (f"/v1/blocks/{alice.user_id}", 403, "themselves"),
        ("/v1/blocks/not-a-number", 400, "user_id"),
        ("/v1/blocks/123456789012345", 404, "does not exist"),
        (f"/v1/blocks/{2**64}", 404, "does not exist"),
    ):
        for method in ("PUT", "DELETE"):
            found, body = await alice.call(method, path)
            assert found == status, (method, path, body)
            assert words in body["detail"], body
    async with clients.http.put(f"{BFF}/v1/blocks/{alice.user_id}") as response:
        assert response.status == 401


async def test_a_block_over_grpc(clients: Clients) -> None:
    alice, bob = await _apart(clients)
    carol = await clients.user("stranger")
    chat = await alice.open_chat(bob)

    def md(user: User) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {user.token}"),)

    async def send(user: User) -> messaging_pb2.SendResponse:
        request = messaging_pb2.SendRequest(
            chat_id=chat, client_message_id=uuid.uuid4().hex, body="hi"
        )
        return await clients.stub(user.messaging_server).Send(request, metadata=md(user))

    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await send(carol)
    mine, theirs = clients.stub(alice.messaging_server), clients.stub(bob.messaging_server)
    await mine.BlockUser(messaging_pb2.BlockUserRequest(user_id=bob.user_id), metadata=md(alice))
    listed = await mine.ListBlocked(messaging_pb2.ListBlockedRequest(), metadata=md(alice))
    assert [b.user_id for b in listed.blocked] == [bob.user_id]

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(bob)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == stranger.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await theirs.OpenDirectChat(
            messaging_pb2.OpenDirectChatRequest(peer_id=alice.user_id), metadata=md(bob)
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == stranger.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await send(alice)
    assert own.value.code() == grpc.StatusCode.PERMISSION_DENIED

    await mine.UnblockUser(
        messaging_pb2.UnblockUserRequest(user_id=bob.user_id), metadata=md(alice)
    )
    assert (await send(bob)).message_id
    assert (await send(alice)).message_id
    for bad, code in (
        (alice.user_id, grpc.StatusCode.PERMISSION_DENIED),
        (0, grpc.StatusCode.INVALID_ARGUMENT),
        (123456789012345, grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await mine.BlockUser(messaging_pb2.BlockUserRequest(user_id=bad), metadata=md(alice))
        assert wrong.value.code() == code
