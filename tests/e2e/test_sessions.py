"""Sessions: refresh tokens rotate; the OpenAPI document describes the API that is served."""

from __future__ import annotations

import json

import aiohttp

from bff.openapi import DOCUMENT
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


async def test_the_served_openapi_document_is_the_one_the_routes_are_checked_against(
    clients: Clients,
) -> None:
    """``tests/unit/test_openapi_routes.py`` holds the document against the app's routes; the
    BFF serves that document."""
    async with clients.http.get(f"{BFF}/v1/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert document == json.loads(json.dumps(DOCUMENT))
    async with aiohttp.ClientSession() as http, http.get(f"{BFF}/v1/no-such-route") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
