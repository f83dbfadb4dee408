"""Group chats against the running system: members, roles, limits, and who receives what while
the members change."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from protos.chat.v1 import common_pb2, groups_pb2, messaging_pb2
from tests.e2e.conftest import BFF, Admin, Clients, Stream, User, eventually

Action = common_pb2.ChatChange.Action


def md(user: User) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {user.token}"),)


def key() -> str:
    return uuid.uuid4().hex


async def create(clients: Clients, owner: User, name: str, *members: User) -> groups_pb2.Group:
    return await clients.groups(owner).CreateGroup(
        groups_pb2.CreateGroupRequest(
            name=name, member_ids=[m.user_id for m in members], client_request_id=key()
        ),
        metadata=md(owner),
        timeout=15,
    )


async def send(clients: Clients, user: User, chat_id: str, body: str) -> int:
    reply = await clients.stub(user.messaging_server).Send(
        messaging_pb2.SendRequest(chat_id=chat_id, client_message_id=key(), body=body),
        metadata=md(user),
        timeout=15,
    )
    return int(reply.message_id)


async def entries(user: User, chat_id: str) -> list[dict[str, Any]]:
    """The whole group log the user may read, oldest first (through the BFF)."""
    found: list[dict[str, Any]] = []
    after = "1"
    while True:
        page = await user.history(chat_id, after=after, limit="200")
        found += page
        if len(page) < 200:
            return found
        after = page[-1]["message_id"]


async def drain(stream: Stream, chat_id: str, seconds: float = 3.0) -> list[Any]:
    """Every message event of ``chat_id`` the stream has now or gets within ``seconds``."""
    found: list[Any] = []
    while True:
        try:
            event = await stream.next(seconds)
        except TimeoutError:
            return found
        if event.WhichOneof("event") == "message" and event.message.chat_id == chat_id:
            found.append(event.message)


async def test_a_group_of_five_gets_each_message_once_on_every_device(clients: Clients) -> None:
    alice, bob, carol, dave, erin = [await clients.user(n) for n in ("al", "bo", "ca", "da", "er")]
    everyone = [alice, bob, carol, dave, erin]
    streams = {}
    for user in everyone:
        streams[user.user_id] = [await clients.subscribe(user), await clients.subscribe(user)]
        for stream in streams[user.user_id]:
            await stream.caught_up()
    group = await create(clients, alice, "five of us", bob, carol, dave, erin)
    assert group.chat_id.startswith("g:")
    assert group.members[0].user_id == alice.user_id
    assert {m.user_id: m.role for m in group.members} == {
        alice.user_id: "owner",
        bob.user_id: "member",
        carol.user_id: "member",
        dave.user_id: "member",
        erin.user_id: "member",
    }
    sent = await send(clients, bob, group.chat_id, "hello, group")
    for user in everyone:
        for stream in streams[user.user_id]:
            got = await drain(stream, group.chat_id)
            assert [m.message_id for m in got] == [group.change_id, sent], user.username
            assert got[0].change.action == Action.CREATED
            assert got[0].body.startswith(f"{alice.username} created the group")
            assert got[1].body == "hello, group"
            assert not got[1].HasField("change")
    for user in everyone:

        async def listed(user: User = user) -> Any:
            found = [c for c in await user.chats() if c["chat_id"] == group.chat_id]
            return found and found[0]["last_message_id"] == str(sent) and found[0]

        row = await eventually(listed)
        assert (row["kind"], row["name"], row["member"]) == ("group", "five of us", True)
        log = await entries(user, group.chat_id)
        assert [e["message_id"] for e in log] == [str(group.change_id), str(sent)]
        assert log[0]["change"]["action"] == "created"


async def test_members_receive_exactly_what_is_sent_while_they_are_members(
    clients: Clients,
) -> None:
    """Two senders at 20 msg/s each while members are added, removed and re-added: each user
    receives exactly the messages whose ids lie within their membership windows, once."""
    alice, bob, carol, dave, erin = [await clients.user(n) for n in ("al", "bo", "ca", "da", "er")]
    everyone = [alice, bob, carol, dave, erin]
    streams = {u.user_id: await clients.subscribe(u) for u in everyone}
    for stream in streams.values():
        await stream.caught_up()
    group = await create(clients, alice, "churn", bob, carol)
    chat = group.chat_id
    acknowledged: list[int] = []
    stop = asyncio.Event()

    async def sender(user: User) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():  # 20 messages per second each
            acknowledged.append(await send(clients, user, chat, f"from {user.username}"))
            due += 0.05
            await asyncio.sleep(max(0.0, due - loop.time()))

    senders = [asyncio.create_task(sender(alice)), asyncio.create_task(sender(bob))]
    stub = clients.groups(alice)
    refused_after_removal = 0

    async def apply(call: Any, request: Any) -> None:
        await call(request, metadata=md(alice), timeout=15)
        await asyncio.sleep(0.4)

    await asyncio.sleep(0.5)
    await apply(
        stub.AddMembers,
        groups_pb2.AddMembersRequest(
            chat_id=chat, user_ids=[dave.user_id], client_request_id=key()
        ),
    )
    await apply(
        stub.RemoveMember,
        groups_pb2.RemoveMemberRequest(
            chat_id=chat, user_id=carol.user_id, client_request_id=key()
        ),
    )
    # Carol's send is refused from the moment her removal is acknowledged, on any server.
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send(clients, carol, chat, "still here?")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        refused_after_removal += 1
    await apply(
        stub.AddMembers,
        groups_pb2.AddMembersRequest(
            chat_id=chat, user_ids=[erin.user_id], client_request_id=key()
        ),
    )
    await apply(
        stub.RemoveMember,
        groups_pb2.RemoveMemberRequest(chat_id=chat, user_id=dave.user_id, client_request_id=key()),
    )
    await apply(
        stub.AddMembers,
        groups_pb2.AddMembersRequest(
            chat_id=chat, user_ids=[carol.user_id], client_request_id=key()
        ),
    )
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*senders)
    assert refused_after_removal == 3

    async def complete() -> Any:
        log = await entries(alice, chat)
        return len([e for e in log if "change" not in e]) == len(acknowledged) and log

    log = await eventually(complete)
    assert sorted(int(e["message_id"]) for e in log if "change" not in e) == sorted(acknowledged)
    windows: dict[int, list[list[int]]] = {u.user_id: [] for u in everyone}
    for entry in log:
        change = entry.get("change")
        if change is None:
            continue
        for subject in map(int, change["user_ids"]):
            if change["action"] in ("created", "added"):
                windows[subject].append([int(entry["message_id"]), 2**64])
            elif change["action"] in ("removed", "left"):
                windows[subject][-1][1] = int(entry["message_id"])
    for user in everyone:
        expected = [
            int(e["message_id"])
            for e in log
            if any(low <= int(e["message_id"]) <= high for low, high in windows[user.user_id])
        ]
        got = [m.message_id for m in await drain(streams[user.user_id], chat)]
        # Once each; in the stream, copies from two senders interleave in the order they
        # reached the user's partition, not necessarily in id order.
        assert sorted(got) == expected, user.username
    # Carol, re-added, reads from her re-adding on; Dave, removed, up to his removal.
    carol_log = await entries(carol, chat)
    assert [int(e["message_id"]) for e in carol_log] == [
        i for i in (int(e["message_id"]) for e in log) if i >= windows[carol.user_id][-1][0]
    ]
    dave_log = await entries(dave, chat)
    low, high = windows[dave.user_id][0]
    assert [int(e["message_id"]) for e in dave_log] == [
        i for i in (int(e["message_id"]) for e in log) if low <= i <= high
    ]
    rows = {c["chat_id"]: c for c in await dave.chats()}
    assert rows[chat]["member"] is False


async def test_only_the_owner_and_admins_manage_members(clients: Clients) -> None:
    alice, bob, carol, dave = [await clients.user(n) for n in ("al", "bo", "ca", "da")]
    group = await create(clients, alice, "roles", bob, carol)
    chat = group.chat_id
    as_bob = clients.groups(bob)
    attempts: list[Any] = [
        as_bob.AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=chat, user_ids=[dave.user_id], client_request_id=key()
            ),
            metadata=md(bob),
        ),
        as_bob.RemoveMember(
            groups_pb2.RemoveMemberRequest(
                chat_id=chat, user_id=carol.user_id, client_request_id=key()
            ),
            metadata=md(bob),
        ),
        as_bob.RenameGroup(
            groups_pb2.RenameGroupRequest(chat_id=chat, name="mine", client_request_id=key()),
            metadata=md(bob),
        ),
        as_bob.SetRole(
            groups_pb2.SetRoleRequest(
                chat_id=chat, user_id=bob.user_id, role="admin", client_request_id=key()
            ),
            metadata=md(bob),
        ),
    ]
    for attempt in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await attempt
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Dave, not a member, cannot even list the members.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.groups(dave).GetGroup(
            groups_pb2.GetGroupRequest(chat_id=chat), metadata=md(dave), timeout=15
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The owner makes bob an admin; then bob may add, but not remove another admin.
    await clients.groups(alice).SetRole(
        groups_pb2.SetRoleRequest(
            chat_id=chat, user_id=bob.user_id, role="admin", client_request_id=key()
        ),
        metadata=md(alice),
        timeout=15,
    )
    added = await as_bob.AddMembers(
        groups_pb2.AddMembersRequest(
            chat_id=chat, user_ids=[dave.user_id], client_request_id=key()
        ),
        metadata=md(bob),
        timeout=15,
    )
    assert dave.user_id in [m.user_id for m in added.members]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await as_bob.RemoveMember(
            groups_pb2.RemoveMemberRequest(
                chat_id=chat, user_id=alice.user_id, client_request_id=key()
            ),
            metadata=md(bob),
            timeout=15,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The owner leaves: the admin becomes the owner.
    left = await clients.groups(alice).LeaveGroup(
        groups_pb2.LeaveGroupRequest(chat_id=chat, client_request_id=key()),
        metadata=md(alice),
        timeout=15,
    )
    assert {m.user_id: m.role for m in left.members}[bob.user_id] == "owner"
    assert alice.user_id not in [m.user_id for m in left.members]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await send(clients, alice, chat, "I left")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_size_limit_refuses_and_names_the_limit(clients: Clients, admin: Admin) -> None:
    await admin.change("groups", max_members=3)
    alice, bob, carol, dave = [await clients.user(n) for n in ("al", "bo", "ca", "da")]

    async def refused_with_limit() -> str | None:
        try:
            await create(clients, alice, "too many", bob, carol, dave)
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
        return None

    # The limit is live config: applied within moments.
    refusal = await eventually(refused_with_limit)
    assert refusal.startswith("FAILED_PRECONDITION: a group holds at most 3 members"), refusal
    group = await create(clients, alice, "enough", bob, carol)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await clients.groups(alice).AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=group.chat_id, user_ids=[dave.user_id], client_request_id=key()
            ),
            metadata=md(alice),
            timeout=15,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "at most 3 members" in (refused.value.details() or "")


async def test_concurrent_adds_of_one_user_make_one_membership(clients: Clients) -> None:
    alice, bob, carol = [await clients.user(n) for n in ("al", "bo", "ca")]
    group = await create(clients, alice, "race", bob)
    await clients.groups(alice).SetRole(
        groups_pb2.SetRoleRequest(
            chat_id=group.chat_id, user_id=bob.user_id, role="admin", client_request_id=key()
        ),
        metadata=md(alice),
        timeout=15,
    )
    # Two admins on (possibly) two servers, ten requests each, all adding carol at once.
    calls = [
        clients.groups(user).AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=group.chat_id, user_ids=[carol.user_id], client_request_id=key()
            ),
            metadata=md(user),
            timeout=20,
        )
        for _ in range(10)
        for user in (alice, bob)
    ]
    replies = await asyncio.gather(*calls)
    made = {r.change_id for r in replies if r.change_id}
    assert len(made) == 1, made
    final = await clients.groups(alice).GetGroup(
        groups_pb2.GetGroupRequest(chat_id=group.chat_id), metadata=md(alice), timeout=15
    )
    assert [m.user_id for m in final.members].count(carol.user_id) == 1
    log = await eventually(lambda: _with_entry(alice, group.chat_id, str(next(iter(made)))))
    added = [e for e in log if e.get("change", {}).get("action") == "added"]
    assert len(added) == 1


async def _with_entry(user: User, chat_id: str, message_id: str) -> list[dict[str, Any]] | None:
    log = await entries(user, chat_id)
    return log if any(e["message_id"] == message_id for e in log) else None


async def test_a_retried_change_is_made_once(clients: Clients) -> None:
    alice, bob = [await clients.user(n) for n in ("al", "bo")]
    request_id = key()
    request = groups_pb2.CreateGroupRequest(
        name="once", member_ids=[bob.user_id], client_request_id=request_id
    )
    first = await clients.groups(alice).CreateGroup(request, metadata=md(alice), timeout=15)
    again = await clients.groups(alice).CreateGroup(request, metadata=md(alice), timeout=15)
    assert (again.chat_id, again.change_id) == (first.chat_id, first.change_id)
    rename = groups_pb2.RenameGroupRequest(
        chat_id=first.chat_id, name="twice?", client_request_id=key()
    )
    renamed = [
        await clients.groups(alice).RenameGroup(rename, metadata=md(alice), timeout=15)
        for _ in range(3)
    ]
    assert len({r.change_id for r in renamed}) == 1
    assert renamed[0].version == 2
    log = await eventually(lambda: _with_entry(bob, first.chat_id, str(renamed[0].change_id)))
    assert [e["change"]["action"] for e in log] == ["created", "renamed"]


async def test_groups_over_http(clients: Clients) -> None:
    alice, bob, carol = [await clients.user(n) for n in ("al", "bo", "ca")]
    status, group = await alice.post(
        "/v1/groups", {"name": "web", "member_ids": [str(bob.user_id)], "client_request_id": "g1"}
    )
    assert status == 201, group
    chat = group["chat_id"]
    assert [(m["user_id"], m["role"]) for m in group["members"]] == [
        (str(alice.user_id), "owner"),
        (str(bob.user_id), "member"),
    ]
    status, again = await alice.post(
        "/v1/groups", {"name": "web", "member_ids": [str(bob.user_id)], "client_request_id": "g1"}
    )
    assert (status, again["chat_id"], again["change_id"]) == (201, chat, group["change_id"])
    status, added = await alice.post(
        f"/v1/groups/{chat}/members", {"user_ids": [str(carol.user_id)]}
    )
    assert status == 200, added
    assert len(added["members"]) == 3
    async with alice.http.patch(
        f"{BFF}/v1/groups/{chat}", json={"name": "renamed"}, headers=alice.auth
    ) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["name"] == "renamed"
    async with alice.http.put(
        f"{BFF}/v1/groups/{chat}/members/{bob.user_id}/role",
        json={"role": "admin"},
        headers=alice.auth,
    ) as r:
        assert r.status == 200, await r.text()
    # Carol is a member, not an admin: she may not remove bob (403, problem+json).
    async with carol.http.delete(
        f"{BFF}/v1/groups/{chat}/members/{bob.user_id}", headers=carol.auth
    ) as r:
        assert r.status == 403, await r.text()
        assert r.content_type == "application/problem+json"
    # Carol leaves (her own id); bob, an admin now, removes nobody else.
    async with carol.http.delete(
        f"{BFF}/v1/groups/{chat}/members/{carol.user_id}",
        headers={**carol.auth, "Idempotency-Key": "leave-1"},
    ) as r:
        assert r.status == 200, await r.text()
    status, seen = await bob.get(f"/v1/groups/{chat}")
    assert status == 200, seen
    assert {m["user_id"]: m["role"] for m in seen["members"]} == {
        str(alice.user_id): "owner",
        str(bob.user_id): "admin",
    }
    status, problem = await carol.get(f"/v1/groups/{chat}")
    assert status == 403, problem
    for path, body, expected in (
        ("/v1/groups", {"name": "   "}, 400),
        ("/v1/groups", {"name": "x", "member_ids": "nope"}, 400),
        ("/v1/groups", {"name": "x", "member_ids": ["12345"]}, 404),
        ("/v1/groups/g:1/members", {"user_ids": [str(bob.user_id)]}, 404),
        (f"/v1/groups/{chat}/members", {"user_ids": []}, 400),
    ):
        status, problem = await alice.post(path, body)
        assert status == expected, (path, body, problem)
        assert problem["detail"], problem

    async def whole_log() -> list[str] | None:
        actions = [e["change"]["action"] for e in await entries(alice, chat) if "change" in e]
        return actions if len(actions) >= 5 else None

    assert await eventually(whole_log) == ["created", "added", "renamed", "role_changed", "left"]


async def test_a_member_sends_at_once_on_a_server_that_knew_the_group_before(
    clients: Clients,
) -> None:
    """Both servers cache the group (its first members send), then four users are added one
    at a time and each sends at once: a cached membership without them must not refuse."""
    alice, bob = [await clients.user(n) for n in ("al", "bo")]
    group = await create(clients, alice, "late joiners", bob)
    await send(clients, alice, group.chat_id, "alice was here")
    await send(clients, bob, group.chat_id, "bob was here")
    for n in range(4):
        late = await clients.user(f"late{n}")
        await clients.groups(alice).AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=group.chat_id, user_ids=[late.user_id], client_request_id=key()
            ),
            metadata=md(alice),
            timeout=15,
        )
        assert await send(clients, late, group.chat_id, f"hello from {late.username}")
