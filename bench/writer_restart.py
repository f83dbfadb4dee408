"""The history writer SIGKILLed and started again while messages flow: how long until it writes
again. A writer restarted under its static group member id (``CHAT_WRITER_INSTANCE``) takes its
partitions back at once; without one (``--dynamic``) it waits for the group to rebalance, which
waits for the dead member's session to time out."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from typing import Any

import aiohttp

from bench import limits
from bench.population import open_chats, register_and_login
from bench.reach import HERE
from bench.stats import summary
from infra import apps, processes
from infra.catalog import APPS
from infra.layout import Layout
from infra.services import Context

WRITER = next(a for a in APPS if a.name == "history-writer")
WRITTEN = "history_messages_written_total "
STEADY_SECONDS = 3.0


async def _written(http: aiohttp.ClientSession) -> float | None:
    """What the running writer has written since it started (None while it does not answer)."""
    try:
        async with http.get(f"http://127.0.0.1:{WRITER.ops_port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith(WRITTEN):
            return float(line[len(WRITTEN) :])
    return None


async def _first_write(http: aiohttp.ClientSession) -> float:
    """When the restarted writer first reports a message written (polled every 50 ms)."""
    written = await _written(http)
    while not written:
        await asyncio.sleep(0.05)
        written = await _written(http)
    return time.monotonic()


async def measure(
    bff: str, config_url: str, rounds: int, rate: float, *, dynamic: bool
) -> dict[str, Any]:
    ctx = Context(Layout.from_env())
    app = dataclasses.replace(WRITER, env={}) if dynamic else WRITER
    [alice, bob] = await register_and_login(bff, 2, "wrestart")
    [chat_id] = await open_chats(bff, [(alice, bob)])
    stop = asyncio.Event()
    errors: list[str] = []

    async def keep_sending(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with http.post(
                f"{bff}/v1/chats/{chat_id}/messages",
                json={"client_message_id": uuid.uuid4().hex, "body": "while the writer restarts"},
                headers={"Authorization": f"Bearer {alice.token}"},
            ) as response:
                if response.status != 201:
                    errors.append(f"{response.status} {await response.text()}")
            await asyncio.sleep(1 / rate)

    found = []
    async with (
        limits.send_limits(config_url, rate_per_user=2 * rate, burst=1),
        HERE.http() as http,
    ):
        sender = asyncio.create_task(keep_sending(http))
        try:
            # The first restart puts the writer in the mode measured; it is not counted.
            await asyncio.to_thread(apps.run, ctx, app)
            for _ in range(rounds):
                await asyncio.sleep(STEADY_SECONDS)
                running = processes.alive(ctx.layout.pidfile(WRITER.name))
                if running is None:
                    raise RuntimeError("the history writer is not running")
                os.kill(running.pid, signal.SIGKILL)
                killed = time.monotonic()
                await asyncio.to_thread(apps.run, ctx, app)
                ready = time.monotonic()
                writing = await _first_write(http)
                found.append(
                    {
                        "ready_s": round(ready - killed, 2),
                        "writing_s": round(writing - killed, 2),
                    }
                )
                print(
                    f"killed, ready after {ready - killed:.2f} s, writing after"
                    f" {writing - killed:.2f} s"
                )
        finally:
            stop.set()
            await sender
            if dynamic:  # back as ./dev runs it
                await asyncio.to_thread(apps.run, ctx, WRITER)
    return {
        "static_membership": not dynamic,
        "rate": rate,
        "rounds": found,
        "writing_after_kill_s": summary([r["writing_s"] for r in found]),
        "send_errors": errors[:10],
    }
