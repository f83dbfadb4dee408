"""Sessions: refresh tokens rotate; the OpenAPI document describes the API that is served."""

from __future__ import annotations

import aiohttp

from tests.e2e.conftest import BFF, PASSWORD, Clients


async def test_a_refresh_token_is_spent_once_and_yields_a_working_access_token(
    clients: Clients,
) -> None:
    alice = await clients.user("alice")
    async with clients.http.post(
        f"{BFF}/v1/sessions", json={"username": alice.username, "password": PASSWORD}
    ) as response:
        session = await response.json()
    refresh = session["refresh_token"]

    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": refresh}
    ) as r:
        assert r.status == 200
        renewed = await r.json()
    assert renewed["user_id"] == session["user_id"]
    assert renewed["refresh_token"] != refresh
    async with clients.http.get(
        f"{BFF}/v1/chats", headers={"Authorization": f"Bearer {renewed['access_token']}"}
    ) as r:
        assert r.status == 200

    # Rotation: the old refresh token was spent. Presented again at once (a retry whose
    # answer was lost), it is answered with the same new tokens, not new ones.
    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": refresh}
    ) as r:
        assert r.status == 200
        assert await r.json() == renewed
    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": renewed["refresh_token"]}
    ) as r:
        assert r.status == 200
    # Two rotations on, the first token is a replay: refused, and the session ends.
    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": refresh}
    ) as r:
        assert r.status == 401
        assert "already used" in (await r.json())["detail"]


async def test_the_openapi_document_lists_every_served_route(clients: Clients) -> None:
    async with clients.http.get(f"{BFF}/v1/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    served = {
        ("post", "/v1/users"),
        ("post", "/v1/sessions"),
        ("post", "/v1/sessions/refresh"),
        ("delete", "/v1/sessions"),
        ("delete", "/v1/sessions/current"),
        ("post", "/v1/stream/tickets"),
        ("get", "/v1/stream/sse"),
        ("post", "/v1/chats/direct"),
        ("get", "/v1/chats"),
        ("get", "/v1/chats/{chat_id}/messages"),
        ("post", "/v1/chats/{chat_id}/messages"),
        ("post", "/v1/chats/{chat_id}/read"),
        ("get", "/v1/chats/{chat_id}/messages/{message_id}/readers"),
        ("get", "/v1/users"),
        ("get", "/v1/users/{user_id}"),
        ("post", "/v1/groups"),
        ("get", "/v1/groups/{chat_id}"),
        ("patch", "/v1/groups/{chat_id}"),
        ("post", "/v1/groups/{chat_id}/members"),
        ("delete", "/v1/groups/{chat_id}/members/{user_id}"),
        ("put", "/v1/groups/{chat_id}/members/{user_id}/role"),
        ("post", "/v1/chats/{chat_id}/delivered"),
        ("patch", "/v1/chats/{chat_id}/messages/{message_id}"),
        ("delete", "/v1/chats/{chat_id}/messages/{message_id}"),
        ("put", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"),
        ("delete", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"),
        ("post", "/v1/chats/{chat_id}/typing"),
        ("get", "/v1/presence"),
        ("get", "/v1/me/notifications"),
        ("put", "/v1/me/notifications"),
    }
    described = {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert described == served
    assert document["x-websocket"]["path"] == "/v1/stream/ws"
    async with aiohttp.ClientSession() as http, http.get(f"{BFF}/v1/no-such-route") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
