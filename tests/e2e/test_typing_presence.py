"""Typing and presence: ephemeral events between the members of a chat, across servers."""

from __future__ import annotations

import contextlib
import time

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import Clients, Stream, User, eventually


async def next_of(stream: Stream, kind: str, seconds: float = 10.0) -> messaging_pb2.ClientEvent:
    while True:
        event = await stream.next(seconds)
        if event.WhichOneof("event") == kind:
            return event


async def none_of(stream: Stream, kind: str, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        while True:
            if (await stream.next(seconds)).WhichOneof("event") == kind:
                return False
    return True


async def users_on_both_servers(clients: Clients) -> tuple[User, User]:
    """Two new users whose partitions are on different messaging servers."""
    first = await clients.user("pa")
    while True:
        other = await clients.user("pb")
        if other.messaging_server != first.messaging_server:
            return first, other


async def test_typing_reaches_the_other_member_and_expires(clients: Clients) -> None:
    alice, bob = await users_on_both_servers(clients)
    chat = await alice.open_chat(bob)
    watching = await clients.subscribe(bob)
    await watching.caught_up()
    before = int(time.time() * 1000)
    status, _ = await alice.call("POST", f"/v1/chats/{chat}/typing")  # no body: typing
    assert status == 204
    typing = (await next_of(watching, "typing")).typing
    assert (typing.chat_id, typing.user_id, typing.stopped) == (chat, alice.user_id, False)
    # It lasts the live config's typing_seconds (6 by default), then clients drop it.
    assert before < typing.expires_at_ms <= int(time.time() * 1000) + 6_000
    assert typing.expires_at_ms >= before + 2_000
    # Typing again at once is folded into the event already sent; stopping is told.
    status, _ = await alice.post(f"/v1/chats/{chat}/typing", {})
    assert status == 204
    assert await none_of(watching, "typing", 1.0)
    status, _ = await alice.post(f"/v1/chats/{chat}/typing", {"stopped": True})
    assert status == 204
    stopped = (await next_of(watching, "typing")).typing
    assert (stopped.user_id, stopped.stopped) == (alice.user_id, True)
    # Too many calls a second are refused; a stranger's typing goes nowhere.
    statuses = [(await alice.post(f"/v1/chats/{chat}/typing", {}))[0] for _ in range(15)]
    assert 429 in statuses, statuses
    carol = await clients.user("ca")
    status, problem = await carol.post(f"/v1/chats/{chat}/typing", {})
    assert status == 403, problem
    status, problem = await alice.post(f"/v1/chats/{chat}/typing", {"stopped": "yes"})
    assert status == 400, problem


async def test_presence_flips_online_and_offline_across_two_servers(clients: Clients) -> None:
    alice, bob = await users_on_both_servers(clients)
    chat = await alice.open_chat(bob)
    watching = await clients.subscribe(alice)
    await watching.caught_up()

    async def presence_of(user: User) -> dict[str, object]:
        status, body = await alice.get(f"/v1/presence?user_ids={user.user_id}")
        assert status == 200, body
        [found] = body["presences"]
        return dict(found)

    assert (await presence_of(bob))["online"] is False
    # Bob comes online on his server; Alice, on the other, is told.
    phone = await clients.subscribe(bob)
    await phone.caught_up()
    online = (await next_of(watching, "presence")).presence
    assert (online.user_id, online.online) == (bob.user_id, True)
    assert (await presence_of(bob))["online"] is True
    # A second device: still online once; its ending leaves Bob online.
    laptop = await clients.subscribe(bob)
    await laptop.caught_up()
    phone.call.cancel()
    assert await none_of(watching, "presence", 4.0)
    assert (await presence_of(bob))["online"] is True
    # The last stream ends: offline, with when he was last seen.
    ended_at = int(time.time() * 1000)
    laptop.call.cancel()
    offline = (await next_of(watching, "presence")).presence
    assert (offline.user_id, offline.online) == (bob.user_id, False)
    assert offline.last_seen_ms >= ended_at

    async def shown_offline() -> dict[str, object] | None:
        found = await presence_of(bob)
        return found if found["online"] is False else None

    found = await eventually(shown_offline)
    assert isinstance(found["last_seen_ms"], int)
    assert found["last_seen_ms"] >= ended_at
    # Only people one shares a chat with.
    stranger = await clients.user("st")
    status, problem = await stranger.get(f"/v1/presence?user_ids={bob.user_id}")
    assert status == 403, problem
    status, problem = await alice.get("/v1/presence?user_ids=x")
    assert status == 400, problem
    assert chat
