"""``python -m messaging rebuild`` and ``python -m history rebuild``: a keyspace rebuilt from the
log by each owner equals the live one, after a mixed workload (direct chats, a group with every
kind of change, messages) during which the history writer was killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import Cluster, Session

from chatlib import cassandra
from chatlib.ids import signed
from chatlib.settings import Common, Env
from infra import apps, processes
from infra.layout import Layout
from infra.services import Context
from protos.chat.v1 import groups_pb2
from tests.e2e.conftest import Clients, User, eventually
from tests.e2e.test_groups import create, entries, key, md, send

LIVE = os.environ.get("CHAT_KEYSPACE", "chat")


@pytest.fixture
def db() -> Iterator[Session]:
    cluster: Cluster
    cluster, session = cassandra.connect(
        Common(Env({"CHAT_JWT_SECRET": "-", **os.environ})).cassandra
    )
    try:
        yield session
    finally:
        cluster.shutdown()


def rows(db: Session, keyspace: str, cql: str, *params: Any) -> list[tuple[Any, ...]]:
    found = db.execute(db.prepare(cql.replace("{ks}", keyspace)), params)
    return sorted((tuple(row) for row in found), key=repr)


async def test_a_keyspace_rebuilt_from_the_log_equals_the_live_one(
    clients: Clients, db: Session
) -> None:
    alice, bob, carol, dave = [await clients.user(n) for n in ("al", "bo", "ca", "da")]
    everyone = [alice, bob, carol, dave]
    direct = await alice.open_chat(bob)
    await bob.open_chat(carol)  # opened, never written in
    group = await create(clients, alice, "log", bob, carol)
    chat = group.chat_id
    stub = clients.groups(alice)
    ctx = Context(layout=Layout.from_env())
    sent: list[int] = []

    async def workload() -> None:
        for n in range(60):
            sent.append(await send(clients, [alice, bob][n % 2], chat, f"g{n}"))
            sent.append(await alice.send(direct, f"d{n}") if n % 3 == 0 else 0)
            if n == 20:
                writer = processes.alive(ctx.layout.pidfile("history-writer"))
                assert writer is not None, "no history writer is running"
                os.kill(writer.pid, signal.SIGKILL)
                await asyncio.to_thread(apps.start, ctx, {"history-writer"})
            if n == 10:
                await stub.AddMembers(
                    groups_pb2.AddMembersRequest(
                        chat_id=chat, user_ids=[dave.user_id], client_request_id=key()
                    ),
                    metadata=md(alice),
                    timeout=15,
                )
            if n == 25:
                await stub.SetRole(
                    groups_pb2.SetRoleRequest(
                        chat_id=chat, user_id=bob.user_id, role="admin", client_request_id=key()
                    ),
                    metadata=md(alice),
                    timeout=15,
                )
            if n == 30:
                await stub.RemoveMember(
                    groups_pb2.RemoveMemberRequest(
                        chat_id=chat, user_id=carol.user_id, client_request_id=key()
                    ),
                    metadata=md(alice),
                    timeout=15,
                )
            if n == 35:
                # Amendments: an edit, a reaction taken back and one kept, a deletion.
                for user, method, path, body in (
                    (alice, "PATCH", f"/v1/chats/{chat}/messages/{sent[0]}", {"body": "g0!"}),
                    (
                        bob,
                        "PUT",
                        f"/v1/chats/{chat}/messages/{sent[0]}/reactions/%F0%9F%91%8D",
                        None,
                    ),
                    (
                        bob,
                        "PUT",
                        f"/v1/chats/{chat}/messages/{sent[2]}/reactions/%F0%9F%91%8D",
                        None,
                    ),
                    (
                        bob,
                        "DELETE",
                        f"/v1/chats/{chat}/messages/{sent[2]}/reactions/%F0%9F%91%8D",
                        None,
                    ),
                    (alice, "DELETE", f"/v1/chats/{chat}/messages/{sent[4]}", None),
                ):
                    status, answer = await user.call(method, path, body)
                    assert status == 201, answer
            if n == 40:
                await stub.RenameGroup(
                    groups_pb2.RenameGroupRequest(
                        chat_id=chat, name="log, renamed", client_request_id=key()
                    ),
                    metadata=md(alice),
                    timeout=15,
                )
            if n == 50:
                await stub.LeaveGroup(  # the owner leaves: bob, the admin, owns it now
                    groups_pb2.LeaveGroupRequest(chat_id=chat, client_request_id=key()),
                    metadata=md(alice),
                    timeout=15,
                )
                return

    await workload()
    expected = {i for i in sent if i}
    for reader, chat_id in ((bob, chat), (bob, direct), (alice, direct)):
        status, _ = await reader.post(f"/v1/chats/{chat_id}/read", {"message_id": str(max(sent))})
        assert status == 204
    status, _ = await dave.post(f"/v1/chats/{chat}/delivered", {"message_id": str(max(sent))})
    assert status == 204

    async def written() -> bool:
        log = await entries(bob, chat)
        ids = {int(e["message_id"]) for e in log} | {
            int(m["message_id"]) for m in await alice.history(direct, limit="200")
        }
        return expected <= ids

    await eventually(written, seconds=60)
    await eventually(lambda: _writer_idle(clients), seconds=60)

    # A profile is in the log too: the rebuilt row has it, picture and all.
    status, upload = await alice.post("/v1/me/avatar", {"size": 4, "content_type": "image/png"})
    assert status == 201, upload
    async with alice.http.put(upload["url"], data=b"\x89PNG", headers=upload["headers"]) as r:
        assert r.status == 200, await r.text()
    status, profile = await alice.call(
        "PUT",
        "/v1/me/profile",
        {"display_name": "Alice, logged", "avatar_id": upload["attachment_id"]},
    )
    assert (status, profile["avatar_id"]) == (200, upload["attachment_id"]), profile

    # A user from before registration announced users: only the backfill puts them on the log.
    legacy_id = 2**62 + uuid.uuid4().int % 2**40
    legacy_name = f"legacy{uuid.uuid4().hex[:10]}"
    db.execute(
        db.prepare(
            f"INSERT INTO {LIVE}.users (user_id, username, password_hash, created_at)"
            " VALUES (?, ?, ?, toTimestamp(now()))"
        ),
        (legacy_id, legacy_name, "x"),
    )
    db.execute(
        db.prepare(f"INSERT INTO {LIVE}.users_by_name (username, user_id) VALUES (?, ?)"),
        (legacy_name, legacy_id),
    )
    await _run("history", "backfill-users")

    # Each owner rebuilds its own tables into the new keyspace.
    keyspace = f"rebuild_{uuid.uuid4().hex[:12]}"
    await _run("messaging", "rebuild", "--keyspace", keyspace)
    await _run("history", "rebuild", "--keyspace", keyspace)
    try:
        ids = [signed(u.user_id) for u in everyone] + [legacy_id]
        names = [u.username for u in everyone] + [legacy_name]
        chats = [direct, chat, _direct_id(bob, carol)]
        for cql, params in (
            (
                "SELECT user_id, username, password_hash, created_at, display_name, avatar_id"
                " FROM {ks}.users WHERE user_id IN ?",
                (ids,),
            ),
            ("SELECT username, user_id FROM {ks}.users_by_name WHERE username IN ?", (names,)),
            ("SELECT chat_id, kind, member_ids FROM {ks}.chats WHERE chat_id IN ?", (chats,)),
            (
                "SELECT chat_id, user_id, role, since_id, until_id, name, version, last_change_id,"
                " last_change FROM {ks}.group_members WHERE chat_id = ?",
                (chat,),
            ),
            ("SELECT chat_id, bucket FROM {ks}.chat_buckets WHERE chat_id IN ?", (chats,)),
            (
                "SELECT chat_id, user_id, read_up_to, delivered_up_to FROM {ks}.read_marks"
                " WHERE chat_id IN ?",
                (chats,),
            ),
            (
                "SELECT chat_id, kind, last_message, read_watermark, name, visible_from,"
                " visible_until FROM {ks}.chats_by_user WHERE user_id IN ?",
                (ids,),
            ),
        ):
            live = rows(db, LIVE, cql, *params)
            rebuilt = rows(db, keyspace, cql, *params)
            assert live, cql
            assert rebuilt == live, cql
        pictured = rows(
            db, keyspace, "SELECT avatar_id FROM {ks}.users WHERE user_id = ?", alice.user_id
        )
        assert pictured == [(int(upload["attachment_id"]),)]
        for chat_id in (direct, chat):
            buckets = [
                r[1]
                for r in rows(
                    db,
                    LIVE,
                    "SELECT chat_id, bucket FROM {ks}.chat_buckets WHERE chat_id = ?",
                    chat_id,
                )
            ]
            for bucket in buckets:
                cql = (
                    "SELECT message_id, sender_id, body, client_message_id, created_at, change,"
                    " edited_at, deleted, reacted FROM {ks}.messages_by_chat"
                    " WHERE chat_id = ? AND bucket = ?"
                )
                assert rows(db, keyspace, cql, chat_id, bucket) == rows(
                    db, LIVE, cql, chat_id, bucket
                )
    finally:
        db.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


async def _run(package: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        package,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


def _direct_id(a: User, b: User) -> str:
    low, high = sorted((a.user_id, b.user_id))
    return f"d:{low}:{high}"


async def _writer_idle(clients: Clients) -> bool:
    """The history writer has consumed everything (its lag, from its /metrics, is 0)."""
    async with clients.http.get("http://127.0.0.1:9302/metrics") as response:
        text = await response.text()
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chat_consumer_lag") and "history" in line
    ]
    return bool(lags) and max(lags) == 0
