"""Redis goes away: services keep serving with the last good config, say so in readiness,
and pick up what changed meanwhile once Redis is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra import stack
from infra.layout import PROJECT_ROOT, Layout
from infra.services import Context
from infra.services.redis import Redis
from tests.e2e.conftest import (
    BFF,
    PASSWORD,
    Admin,
    Clients,
    applied_everywhere,
    each_received_once,
    eventually,
    follow,
    jwt_secret,
)
from tests.tcp_proxy import CuttableProxy

SERVICE_OPS = {"messaging-m1": 9311, "messaging-m2": 9312, "history-query": 9301, "bff": 9401}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def readiness(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
        return dict(await r.json())


async def register(base: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/v1/users",
            json={"username": f"cut{uuid.uuid4().hex[:10]}", "password": PASSWORD},
        ) as r,
    ):
        return r.status


@pytest.fixture
async def proxied_bff(tmp_path: Path) -> AsyncIterator[tuple[str, int, CuttableProxy]]:
    """A second BFF process whose only way to Redis is a proxy the test can cut."""
    proxy = CuttableProxy("127.0.0.1", 6379)
    await proxy.start()
    port, ops = free_port(), free_port()
    env = {
        **os.environ,
        "CHAT_JWT_SECRET": jwt_secret(),
        "CHAT_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
        "CHAT_BFF_PORT": str(port),
        "CHAT_OPS_PORT": str(ops),
    }
    log = (tmp_path / "bff.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the test waits on /readyz
        [sys.executable, "-m", "bff"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=log
    )
    try:

        async def ready() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                return bool((await readiness(ops))["ready"])
            return False

        await eventually(ready, seconds=30)
        yield f"http://127.0.0.1:{port}", ops, proxy
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 15)
        log.close()
        await proxy.close()


async def test_a_change_made_while_a_service_was_cut_off_applies_when_it_reconnects(
    admin: Admin, proxied_bff: tuple[str, int, CuttableProxy]
) -> None:
    base, ops, proxy = proxied_bff
    assert await register(base) == 201
    await proxy.cut()

    async def degraded() -> Any:
        return (await readiness(ops))["degraded"].get("config")

    note = await eventually(degraded)
    assert "serving the last good config: partitioning v" in note

    await admin.change("features", registration_open=False)

    async def closed_on_the_main_bff() -> bool:
        return await register(BFF) == 403

    await eventually(closed_on_the_main_bff)
    # Cut off, the second BFF still serves with what it last knew: registration open.
    assert await register(base) == 201

    await proxy.start()

    async def closed_after_reconnect() -> bool:
        return await register(base) == 403

    await eventually(closed_after_reconnect)
    assert (await readiness(ops))["degraded"] == {}


async def test_redis_restarted_under_load(clients: Clients, admin: Admin) -> None:
    users = [await clients.user("outage") for _ in range(4)]
    chats = [await users[0].open_chat(users[1]), await users[2].open_chat(users[3])]
    members = {chats[0]: {0, 1}, chats[1]: {2, 3}}
    followers = await follow(clients, users)

    acked: dict[str, list[int]] = {chat: [] for chat in chats}
    refused = 0
    stop = asyncio.Event()

    async def keep_sending(sender: int, chat: str) -> None:
        nonlocal refused
        while not stop.is_set():
            client_id = uuid.uuid4().hex
            while True:  # as a client does: retry the same message until it is accepted
                status, body = await users[sender].post(
                    f"/v1/chats/{chat}/messages", {"client_message_id": client_id, "body": "x"}
                )
                if status in (200, 201):
                    acked[chat].append(int(body["message_id"]))
                    break
                assert status == 503, body
                refused += 1
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.1)

    senders = [asyncio.create_task(keep_sending(s, chats[s // 2])) for s in (0, 1, 2, 3)]
    ctx = Context(Layout.from_env())
    outcomes: list[BaseException | None] = []
    try:
        await asyncio.sleep(2)
        await asyncio.to_thread(stack.down, ctx, [Redis()])

        async def everyone_degraded() -> bool:
            for port in SERVICE_OPS.values():
                if "config" not in (await readiness(port))["degraded"]:
                    return False
            return True

        await eventually(everyone_degraded)
        # Meanwhile reads are served as before: routing from the last good config, history.
        await users[0].history(chats[0], limit="5")  # answers 200 (asserted inside)
        await asyncio.to_thread(stack.up, ctx, [Redis()])

        async def everyone_resubscribed() -> bool:
            return all([(await readiness(p))["degraded"] == {} for p in SERVICE_OPS.values()])

        await eventually(everyone_resubscribed, seconds=30)
        # Each service follows changes again: a new limit reaches all of them.
        changed = await admin.change("limits", history_page_max=150)
        await applied_everywhere("limits", changed["version"], (9311, 9312, 9301))
        features = await admin.change("features", registration_open=True, sending_enabled=True)
        assert features["changed"] is False  # unchanged values make no new version
        await asyncio.sleep(2)
    finally:
        stop.set()
        outcomes = await asyncio.gather(*senders, return_exceptions=True)
        await asyncio.to_thread(stack.up, ctx, [Redis()])  # whatever happened above

    for outcome in outcomes:
        if outcome is not None:
            raise outcome
    assert refused > 0, "the outage never reached a sender"
    # The live streams never noticed: no follower had to reconnect.
    assert [(f.state.retries, f.state.refusals, f.state.redirects) for f in followers] == [
        (0, 0, [])
    ] * len(followers)
    await each_received_once(followers, acked, members)
