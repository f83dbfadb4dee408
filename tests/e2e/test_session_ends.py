"""Sessions that really end: logout, logout everywhere, an operator's kick, a reused refresh
token, an expired token. Each is checked where a client would notice: the BFF, the gRPC
services, and live streams (which end with UNAUTHENTICATED saying why)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import grpc
import pytest

from chatlib import tokens
from protos.chat.v1 import history_pb2, history_pb2_grpc, messaging_pb2
from tests.e2e.conftest import (
    BFF,
    CONFIG,
    FOLLOWERS,
    PASSWORD,
    Admin,
    Clients,
    User,
    admin_token,
    applied_everywhere,
    jwt_secret,
)

HISTORY = "127.0.0.1:7201"


async def _login(clients: Clients, username: str) -> dict[str, Any]:
    async with clients.http.post(
        f"{BFF}/v1/sessions", json={"username": username, "password": PASSWORD}
    ) as r:
        assert r.status == 201, await r.text()
        return dict(await r.json())


def _as_user(clients: Clients, user: User, session: dict[str, Any]) -> User:
    return User(
        user.username, user.user_id, session["access_token"], user.messaging_server, clients.http
    )


async def _ended(clients: Clients, user: User) -> grpc.aio.AioRpcError:
    """Open a stream for ``user``, wait for caught_up, and return the error it ends with."""
    call = clients.stub(user.messaging_server).Subscribe(
        messaging_pb2.SubscribeRequest(), metadata=(("authorization", f"Bearer {user.token}"),)
    )
    clients.calls.append(call)
    first = await asyncio.wait_for(call.read(), 15)
    assert isinstance(first, messaging_pb2.ClientEvent)
    assert first.WhichOneof("event") == "caught_up"

    async def rest() -> grpc.aio.AioRpcError:
        try:
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc
        raise AssertionError("the stream ended without a status")

    return await asyncio.wait_for(rest(), 30)


async def _refused_everywhere(clients: Clients, user: User) -> None:
    status, body = await user.get("/v1/chats")
    assert status == 401, body
    assert "ended" in body["detail"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.stub(user.messaging_server).Send(
            messaging_pb2.SendRequest(chat_id="g:1", client_message_id="x", body="x"),
            metadata=(("authorization", f"Bearer {user.token}"),),
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    history = history_pb2_grpc.HistoryServiceStub(clients.channel(HISTORY))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await history.ListChats(
            history_pb2.ListChatsRequest(), metadata=(("authorization", f"Bearer {user.token}"),)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_refuses_the_token_everywhere_and_ends_its_streams(clients: Clients) -> None:
    alice = await clients.user("logout")
    other = _as_user(clients, alice, await _login(clients, alice.username))
    watcher = asyncio.ensure_future(_ended(clients, alice))
    await asyncio.sleep(0.5)  # the stream is open and caught up

    async with clients.http.delete(f"{BFF}/v1/sessions/current", headers=alice.auth) as r:
        assert r.status == 204, await r.text()
    ended = await watcher
    assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "logged out" in (ended.details() or "")
    await _refused_everywhere(clients, alice)
    # The other session (another device) is untouched.
    status, _ = await other.get("/v1/chats")
    assert status == 200


async def test_logout_everywhere_ends_every_session_of_the_user(clients: Clients) -> None:
    bob = await clients.user("logoutall")
    session = await _login(clients, bob.username)
    laptop = _as_user(clients, bob, session)
    watchers = [asyncio.ensure_future(_ended(clients, u)) for u in (bob, laptop)]
    await asyncio.sleep(0.5)

    async with clients.http.delete(f"{BFF}/v1/sessions", headers=bob.auth) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["sessions_ended"] == 2
    for watcher in watchers:
        assert (await watcher).code() == grpc.StatusCode.UNAUTHENTICATED
    for user in (bob, laptop):
        await _refused_everywhere(clients, user)
    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": session["refresh_token"]}
    ) as r:
        assert r.status == 401


async def test_an_operator_kick_ends_the_users_sessions_and_is_audited(clients: Clients) -> None:
    carol = await clients.user("kicked")
    watcher = asyncio.ensure_future(_ended(clients, carol))
    await asyncio.sleep(0.5)
    admin = {"Authorization": f"Bearer {admin_token()}"}
    reason = f"abuse report {uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{CONFIG}/v1/admin/users/{carol.user_id}/kick", json={"reason": reason}, headers=admin
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["sessions_ended"] == 1
        ended = await watcher
        assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason in (ended.details() or "")
        await _refused_everywhere(clients, carol)
        async with http.get(f"{CONFIG}/v1/admin/audit/kicks", headers=admin) as r:
            entries = (await r.json())["entries"]
        assert any(e["user_id"] == str(carol.user_id) and e["reason"] == reason for e in entries)
        # Without the admin credential there is no kick.
        async with http.post(
            f"{CONFIG}/v1/admin/users/{carol.user_id}/kick", json={"reason": "x"}
        ) as r:
            assert r.status == 401


async def _refresh(clients: Clients, token: str) -> tuple[int, Any]:
    async with clients.http.post(f"{BFF}/v1/sessions/refresh", json={"refresh_token": token}) as r:
        return r.status, await r.json()


async def test_concurrent_refreshes_with_one_token_all_get_the_winners_tokens(
    clients: Clients,
) -> None:
    """Two tabs, or a phone retrying a refresh whose answer it lost: within the reuse interval
    the spent token answers the same new pair, and the session goes on."""
    dave = await clients.user("race")
    session = await _login(clients, dave.username)
    answers = await asyncio.gather(
        *(_refresh(clients, session["refresh_token"]) for _ in range(20))
    )
    assert [status for status, _ in answers] == [200] * 20, answers
    pairs = {(body["access_token"], body["refresh_token"]) for _, body in answers}
    assert len(pairs) == 1, "every refresh must get the winner's tokens"
    [(access, refresh)] = pairs
    assert (access, refresh) != (session["access_token"], session["refresh_token"])
    # The one new pair works everywhere, and rotates on.
    renewed = _as_user(clients, dave, {"access_token": access})
    assert (await renewed.get("/v1/chats"))[0] == 200
    stream = await clients.subscribe(renewed)
    await stream.caught_up()
    status, body = await _refresh(clients, refresh)
    assert status == 200, body
    assert (await _as_user(clients, dave, body).get("/v1/chats"))[0] == 200


async def test_reusing_a_spent_refresh_token_after_the_interval_ends_the_session_family(
    clients: Clients, admin: Admin
) -> None:
    changed = await admin.change("sessions", refresh_reuse_seconds=1)
    await applied_everywhere("sessions", changed["version"], FOLLOWERS["sessions"])
    erin = await clients.user("reuse")
    first = await _login(clients, erin.username)
    status, second = await _refresh(clients, first["refresh_token"])
    assert status == 200, second
    await asyncio.sleep(2.5)  # past the 1 s reuse interval (whole seconds: at least 2 s)
    # A thief replays the first token: refused, and the whole family with it.
    status, problem = await _refresh(clients, first["refresh_token"])
    assert status == 401, problem
    assert "already used" in problem["detail"]
    status, problem = await _refresh(clients, second["refresh_token"])
    assert status == 401, problem
    await _refused_everywhere(clients, _as_user(clients, erin, second))


async def test_an_older_refresh_token_ends_the_family_even_within_the_interval(
    clients: Clients,
) -> None:
    """Only the generation spent last is answered again: one spent before it is a replay."""
    gina = await clients.user("older")
    first = await _login(clients, gina.username)
    status, second = await _refresh(clients, first["refresh_token"])
    assert status == 200, second
    status, third = await _refresh(clients, second["refresh_token"])
    assert status == 200, third
    status, problem = await _refresh(clients, first["refresh_token"])
    assert status == 401, problem
    assert "already used" in problem["detail"]
    await _refused_everywhere(clients, _as_user(clients, gina, third))


async def test_a_stream_ends_when_its_access_token_expires(clients: Clients) -> None:
    frank = await clients.user("expiry")
    short = tokens.issue(jwt_secret(), str(frank.user_id), 3)
    ended = await _ended(
        clients, User(frank.username, frank.user_id, short, frank.messaging_server, clients.http)
    )
    assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (ended.details() or "")


async def test_failed_logins_are_limited_per_username(clients: Clients, admin: Admin) -> None:
    budget = (await admin.get("auth"))["value"]["login_failures_per_username"]
    grace = await clients.user("limited")
    statuses = []
    for _ in range(budget + 2):
        async with clients.http.post(
            f"{BFF}/v1/sessions", json={"username": grace.username, "password": "wrong password"}
        ) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert "too many" in (await r.json())["detail"]
    assert statuses[:budget] == [401] * budget, statuses
    assert statuses[budget:] == [429, 429], statuses
    # The right password is refused too while the budget is spent (or a guesser would
    # learn which one was right).
    async with clients.http.post(
        f"{BFF}/v1/sessions", json={"username": grace.username, "password": PASSWORD}
    ) as r:
        assert r.status == 429


async def test_a_resume_cursor_ahead_of_the_log_gets_a_resync_event(clients: Clients) -> None:
    henry = await clients.user("ahead")
    probe = await clients.subscribe(henry)
    cursor = (await probe.caught_up()).cursor
    partition = cursor.split(".")[1]
    stream = await clients.subscribe(henry, f"v1.{partition}.999999999999")
    first = await stream.next()
    assert first.WhichOneof("event") == "resync_required"
    assert "ahead" in first.resync_required.reason
    assert (await stream.next()).WhichOneof("event") == "caught_up"


async def test_forged_or_malformed_refresh_tokens_are_refused_and_end_nothing(
    clients: Clients,
) -> None:
    ivan = await clients.user("forge")
    session = await _login(clients, ivan.username)
    sid, generation, mac = session["refresh_token"].split(".")
    for forged in (
        f"{sid}.{int(generation) + 1}.{mac}",  # a generation not yet issued, old MAC
        f"{sid}.{generation}.{mac[:-2]}AA",
        f"{sid}.\u0663.{mac}",  # a non-ASCII digit
        f"{sid}.{generation}",
        "x" * 200,
        "",
    ):
        async with clients.http.post(
            f"{BFF}/v1/sessions/refresh", json={"refresh_token": forged}
        ) as r:
            assert r.status in (400, 401), (forged, r.status)
    # None of that touched the real session: its refresh token still works once.
    async with clients.http.post(
        f"{BFF}/v1/sessions/refresh", json={"refresh_token": session["refresh_token"]}
    ) as r:
        assert r.status == 200, await r.text()
