"""Bad input gets the right status and a message naming the problem, and stores nothing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import aiohttp
import grpc
import jwt
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, Clients, User, jwt_secret


def _forged(user: User, kind: str) -> str:
    claims = {
        "sub": str(user.user_id),
        "sid": "x",
        "iss": "chat-bff",
        "exp": int(time.time()) + 600,
    }
    if kind == "expired":
        claims["exp"] = int(time.time()) - 10
        return jwt.encode(claims, jwt_secret(), algorithm="HS256")
    if kind == "wrong-key":
        return jwt.encode(claims, "not-the-key-" * 4, algorithm="HS256")
    # alg none: a header and payload with an empty signature.
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}."


async def _post(
    http: aiohttp.ClientSession, path: str, data: Any, headers: dict[str, str]
) -> tuple[int, dict[str, Any], str]:
    async with http.post(f"{BFF}{path}", data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.content_type


@pytest.mark.parametrize(
    ("token_kind", "detail"),
    [
        ("none", "no access token"),
        ("expired", "expired"),
        ("wrong-key", "signature is invalid"),
        ("alg-none", "algorithm is not allowed"),
    ],
)
async def test_bad_tokens_are_refused_over_http_and_grpc(
    clients: Clients, token_kind: str, detail: str
) -> None:
    alice, bob, chat_id = await clients.pair()
    headers = {"Content-Type": "application/json"}
    metadata: tuple[tuple[str, str], ...] = ()
    if token_kind != "none":
        token = _forged(alice, token_kind)
        headers["Authorization"] = f"Bearer {token}"
        metadata = (("authorization", f"Bearer {token}"),)
    body = json.dumps({"client_message_id": "x", "body": "forged"})
    status, problem, content_type = await _post(
        clients.http, f"/v1/chats/{chat_id}/messages", body, headers
    )
    assert status == 401
    assert content_type == "application/problem+json"
    assert detail in problem["detail"]

    stub = clients.stub(alice.messaging_server)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stub.Send(
            messaging_pb2.SendRequest(chat_id=chat_id, client_message_id="x", body="forged"),
            metadata=metadata,
        )
    assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in (failure.value.details() or "")
    assert await bob.history(chat_id) == []


async def test_chat_membership_and_existence_are_enforced(clients: Clients) -> None:
    alice = await clients.user("alice")
    bob = await clients.user("bob")
    carol = await clients.user("carol")
    chat_id = await alice.open_chat(bob)

    status, problem = await carol.post(
        f"/v1/chats/{chat_id}/messages", {"client_message_id": "c", "body": "let me in"}
    )
    assert (status, "not a member" in problem["detail"]) == (403, True)
    status, problem = await carol.get(f"/v1/chats/{chat_id}/messages")
    assert (status, "not a member" in problem["detail"]) == (403, True)

    unknown = f"d:{alice.user_id}:{carol.user_id}"  # well formed, never opened
    status, problem = await alice.post(
        f"/v1/chats/{unknown}/messages", {"client_message_id": "u", "body": "hello?"}
    )
    assert (status, "does not exist" in problem["detail"]) == (404, True)
    status, problem = await alice.post(
        "/v1/chats/not-a-chat/messages", {"client_message_id": "u", "body": "hello?"}
    )
    assert (status, "is not a chat id" in problem["detail"]) == (400, True)
    status, problem = await alice.post("/v1/chats/direct", {"peer_id": "12345"})
    assert (status, "does not exist" in problem["detail"]) == (404, True)
    assert await bob.history(chat_id) == []


async def test_bodies_are_checked_before_anything_is_stored(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    path = f"/v1/chats/{chat_id}/messages"
    cases = [
        ({"client_message_id": "e", "body": ""}, 400, "body is empty"),
        ({"client_message_id": "w", "body": "   \n"}, 400, "body is empty"),
        ({"client_message_id": "o", "body": "x" * 5000}, 400, "maximum is 4096"),
        ({"client_message_id": "", "body": "hi"}, 400, "client_message_id is required"),
        ({"body": "hi"}, 400, "'client_message_id' must be a string"),
        ({"client_message_id": 7, "body": "hi"}, 400, "must be a string"),
    ]
    for body, status, detail in cases:
        got, problem = await alice.post(path, body)
        assert (got, detail in problem["detail"]) == (status, True), (body, problem)

    headers = {**alice.auth, "Content-Type": "application/json"}
    for raw, status, detail in (
        ("{not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "must be a JSON object"),
        ('{"client_message_id": "big", "body": "' + "x" * 70_000 + '"}', 413, "too large"),
    ):
        got, problem, content_type = await _post(clients.http, path, raw, headers)
        assert (got, content_type) == (status, "application/problem+json")
        assert detail in problem["detail"] or detail in problem["title"], problem

    assert await bob.history(chat_id) == []
    [chat] = await bob.chats()
    assert chat["last_message_id"] is None


async def test_registration_rejects_bad_and_duplicate_usernames(clients: Clients) -> None:
    name = f"dave{uuid.uuid4().hex[:8]}"
    for body, status, detail in (
        ({"username": "X!", "password": "longenough"}, 400, "username must be"),
        ({"username": name, "password": "short"}, 400, "at least 8"),
        ({"username": name, "password": "longenough"}, 201, ""),
        ({"username": name, "password": "another-one"}, 409, "is taken"),
    ):
        async with clients.http.post(f"{BFF}/v1/users", json=body) as response:
            answer = await response.json(content_type=None)
            assert response.status == status, answer
            if detail:
                assert detail in answer["detail"]
    async with clients.http.post(
        f"{BFF}/v1/sessions", json={"username": name, "password": "wrong-password"}
    ) as response:
        assert response.status == 401
