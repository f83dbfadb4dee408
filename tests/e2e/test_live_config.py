"""Operators change the running cluster through the config service: bad changes are refused
with the reason and change nothing; good ones apply from the next request, everywhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import grpc

from infra.apps import default_partitioning
from infra.layout import PROJECT_ROOT
from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, CONFIG, Admin, Clients, User, applied_everywhere, eventually

M1, M2 = "127.0.0.1:7101", "127.0.0.1:7102"
MESSAGING_OPS = (9311, 9312)


def servers(value: dict[str, Any], **ranges: list[list[int]]) -> dict[str, Any]:
    return value | {
        "servers": [s | {"ranges": ranges.get(s["name"], s["ranges"])} for s in value["servers"]]
    }


async def test_invalid_changes_are_refused_with_the_reason_and_change_nothing(
    admin: Admin,
) -> None:
    partitioning = (await admin.get("partitioning"))["value"]
    limits = (await admin.get("limits"))["value"]
    versions = {s: (await admin.get(s))["version"] for s in ("partitioning", "limits")}
    no_scheme = servers(partitioning)
    no_scheme["servers"][0] = no_scheme["servers"][0] | {"address": "127.0.0.1:7101"}
    cases = [
        (
            "partitioning",
            servers(partitioning, m1=[[0, 6]]),
            400,
            "partition 6 is owned by both 'm1' (0-6) and 'm2' (6-11); ranges must not overlap",
        ),
        (
            "partitioning",
            servers(partitioning, m2=[[7, 11]]),
            400,
            "partition(s) 6 are owned by no server",
        ),
        (
            "partitioning",
            partitioning | {"partitions": 0},
            400,
            "partitioning.partitions must be between 1 and 1024, got 0",
        ),
        (
            "partitioning",
            no_scheme,
            400,
            "partitioning.servers[0].address '127.0.0.1:7101' has no scheme; write it as"
            " grpc://host:port",
        ),
        ("partitioning", partitioning | {"owners": []}, 400, "unknown key 'owners'"),
        ("limits", limits | {"max_body_bytes": 0}, 400, "limits.max_body_bytes must be between"),
        ("limits", limits | {"burst": 3}, 400, "limits: unknown key 'burst'"),
        (
            "quotas",
            {},
            404,
            "unknown section 'quotas' (sections: auth, features, files, groups, limits,"
            " messages, notifications, partitioning, sessions, web)",
        ),
    ]
    for section, value, status, message in cases:
        got, body = await admin.put(section, value)
        assert (got, message in body["detail"]) == (status, True), (section, body)
    for section, version in versions.items():
        assert (await admin.get(section))["version"] == version, section


async def test_a_wrong_or_missing_admin_credential_is_refused(admin: Admin) -> None:
    before = await admin.get("limits")
    async with aiohttp.ClientSession() as http:
        for headers, detail in [
            ({"Authorization": "Bearer " + "x" * 40}, "the admin credential is not valid"),
            ({}, "send the admin credential as 'Authorization: Bearer <token>'"),
        ]:
            async with http.put(
                f"{CONFIG}/v1/config/limits",
                json=before["value"] | {"max_body_bytes": 10},
                headers=headers,
            ) as r:
                assert r.status == 401
                assert (await r.json(content_type=None))["detail"] == detail
    assert (await admin.get("limits"))["version"] == before["version"]


async def test_a_change_is_audited_and_if_match_guards_against_lost_updates(
    admin: Admin,
) -> None:
    before = await admin.get("limits")
    after = await admin.change(
        "limits", history_page_default=before["value"]["history_page_default"] - 1
    )
    assert after["version"] == before["version"] + 1
    assert after["updated_by"] == "admin"
    entry = (await admin.history("limits"))[-1]
    assert entry["version"] == after["version"]
    assert entry["by"] == "admin"
    assert entry["old"] == before["value"]
    assert entry["new"] == after["value"]
    status, body = await admin.put(
        "limits", before["value"], **{"If-Match": f'"{before["version"]}"'}
    )
    assert status == 412, body
    assert f"limits is at version {after['version']}" in body["detail"]


async def _users_on_both_servers(clients: Clients) -> dict[str, User]:
    found: dict[str, User] = {}
    while len(found) < 2:
        user = await clients.user("lim")
        found.setdefault(user.messaging_server, user)
    return found


async def test_limits_apply_from_the_next_request_on_every_server(
    clients: Clients, admin: Admin
) -> None:
    by_server = await _users_on_both_servers(clients)
    peer = await clients.user("peer")
    chats = {server: await user.open_chat(peer) for server, user in by_server.items()}
    for server, user in by_server.items():
        await user.send(chats[server], "y" * 150)

    await admin.change("limits", max_body_bytes=100, history_page_max=5, history_page_default=5)

    async def refused_everywhere() -> bool:
        for server, user in by_server.items():
            status, body = await user.post(
                f"/v1/chats/{chats[server]}/messages",
                {"client_message_id": uuid.uuid4().hex, "body": "y" * 150},
            )
            if status != 400:
                return False
            assert body["detail"] == "body is 150 bytes, the maximum is 100", body
        return True

    await eventually(refused_everywhere)
    user = next(iter(by_server.values()))
    status, body = await user.get(f"/v1/chats/{chats[user.messaging_server]}/messages?limit=6")
    assert (status, body["detail"]) == (400, "limit must be between 1 and 5")


async def test_send_rate_is_limited_per_user_across_servers(clients: Clients, admin: Admin) -> None:
    alice = await clients.user("rate")
    bob = await clients.user("peer")
    chat_id = await alice.open_chat(bob)
    # A refill so slow that nothing comes back during the test: exactly the burst gets in.
    changed = await admin.change("limits", send_rate_per_second=0.01, send_burst=4)
    await applied_everywhere("limits", changed["version"], MESSAGING_OPS)
    outcomes: list[tuple[grpc.StatusCode, str, int]] = []
    for n in range(10):
        # Alternate between the two servers: the bucket is the user's, not the server's.
        stub = clients.stub(M1 if n % 2 else M2)
        try:
            await stub.Send(
                messaging_pb2.SendRequest(
                    chat_id=chat_id, client_message_id=uuid.uuid4().hex, body=f"n{n}"
                ),
                metadata=(("authorization", f"Bearer {alice.token}"),),
            )
            outcomes.append((grpc.StatusCode.OK, "", 0))
        except grpc.aio.AioRpcError as exc:
            retry = dict(exc.trailing_metadata() or ()).get("chat-retry-after-ms", "0")
            outcomes.append((exc.code(), exc.details() or "", int(str(retry))))
    assert [code for code, _, _ in outcomes] == [grpc.StatusCode.OK] * 4 + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ] * 6
    for _, detail, retry_ms in outcomes[4:]:
        assert "send rate limit reached (0.01 messages per second, burst 4)" in detail
        assert retry_ms > 1000  # most of the 100 s a token takes at 0.01 per second

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{BFF}/v1/chats/{chat_id}/messages",
            json={"client_message_id": uuid.uuid4().hex, "body": "over"},
            headers=alice.auth,
        ) as r,
    ):
        assert r.status == 429
        assert int(r.headers["Retry-After"]) >= 1
        assert "retry in" in (await r.json(content_type=None))["detail"]


async def test_feature_flags_close_registration_and_sending(clients: Clients, admin: Admin) -> None:
    alice = await clients.user("flag")
    bob = await clients.user("peer")
    chat_id = await alice.open_chat(bob)
    await admin.change("features", registration_open=False, sending_enabled=False)

    async def closed() -> bool:
        async with clients.http.post(
            f"{BFF}/v1/users",
            json={"username": f"late{uuid.uuid4().hex[:8]}", "password": "x" * 12},
        ) as r:
            return r.status == 403

    await eventually(closed)
    status, body = await alice.post(
        f"/v1/chats/{chat_id}/messages", {"client_message_id": "m", "body": "hello"}
    )
    assert (status, body["detail"]) == (503, "sending is switched off for maintenance; retry later")
    await admin.change("features", registration_open=True, sending_enabled=True)

    async def open_again() -> bool:
        status, _ = await alice.post(
            f"/v1/chats/{chat_id}/messages", {"client_message_id": "m", "body": "hello"}
        )
        return status == 201

    await eventually(open_again)


def config_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config_service", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "CHAT_PARTITIONING_DEFAULT": default_partitioning()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_changes_a_section_and_shows_its_trail(admin: Admin) -> None:
    before = await admin.get("limits")
    changed = await asyncio.to_thread(config_cli, "set", "limits", "send_burst=77")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == f"limits: stored as version {before['version'] + 1}"
    assert (await admin.get("limits"))["value"]["send_burst"] == 77

    refused = await asyncio.to_thread(config_cli, "set", "limits", "send_burst=0")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "rejected: limits.send_burst must be between 1 and 100000, got 0"
    )
    assert (await admin.get("limits"))["version"] == before["version"] + 1

    trail = await asyncio.to_thread(config_cli, "history", "limits", "--limit", "1")
    [entry] = json.loads(trail.stdout)["entries"]
    assert entry["by"].startswith("cli:")
    assert (entry["old"]["send_burst"], entry["new"]["send_burst"]) == (
        before["value"]["send_burst"],
        77,
    )
    seeded = await asyncio.to_thread(config_cli, "seed")
    assert f"config limits: exists (version {before['version'] + 1})" in seeded.stdout
