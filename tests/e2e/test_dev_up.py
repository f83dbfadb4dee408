"""``./dev up`` on a running stack starts what is down or changed and leaves the rest alone:
run while a client streams and sends, it restarts nothing and the client sees no error."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

from infra import processes
from infra.catalog import APPS
from infra.layout import Layout
from infra.services import single_services
from tests.e2e.conftest import Clients, each_received_once, follow


@pytest.mark.timeout(600)
async def test_dev_up_on_a_running_stack_restarts_nothing(clients: Clients) -> None:
    layout = Layout.from_env()
    names = [s.name for s in single_services()] + [a.name for a in APPS]

    def pids() -> dict[str, int | None]:
        found = {}
        for name in names:
            tracked = processes.alive(layout.pidfile(name))
            found[name] = tracked.pid if tracked is not None else None
        return found

    alice, bob, chat = await clients.pair()
    followers = await follow(clients, [alice, bob])
    before = pids()
    assert None not in before.values(), f"not everything runs: {before}"
    acked: list[int] = []
    errors: list[object] = []
    done = asyncio.Event()

    async def keep_sending() -> None:
        while not done.is_set():
            status, body = await alice.post(
                f"/v1/chats/{chat}/messages",
                {"client_message_id": uuid.uuid4().hex, "body": "still here"},
            )
            if status == 201:
                acked.append(int(body["message_id"]))
            else:
                errors.append((status, body))
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(keep_sending())
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            ["./dev", "up"],
            cwd=layout.project,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        await asyncio.sleep(1)
    finally:
        done.set()
        await sender
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert pids() == before, result.stdout[-3000:]
    assert errors == []
    assert len(acked) > 10, "the client did not send while ./dev up ran"
    await each_received_once(followers, {chat: acked}, {chat: {0, 1}})
