"""Acknowledged means durable: a history writer killed mid-stream loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid

from infra import apps, processes
from infra.layout import Layout
from infra.services import Context
from tests.e2e.conftest import Clients, User, eventually

USERS = 20
MESSAGES = 1000
KILL_AFTER = 300


async def test_every_acknowledged_message_is_in_history_once_across_a_writer_kill(
    clients: Clients,
) -> None:
    users = [await clients.user("load") for _ in range(USERS)]
    chats: list[tuple[User, User, str]] = []
    for i, user in enumerate(users):
        peer = users[(i + 1) % USERS]
        chats.append((user, peer, await user.open_chat(peer)))
    rng = random.Random(7)
    plan = [rng.choice(chats) for _ in range(MESSAGES)]
    acked: dict[str, set[int]] = {chat_id: set() for _, _, chat_id in chats}
    killed = asyncio.Event()
    sent = 0
    gate = asyncio.Semaphore(16)
    ctx = Context(layout=Layout.from_env())

    async def send(n: int, sender: User, chat_id: str) -> None:
        nonlocal sent
        async with gate:
            message_id = await sender.send(chat_id, f"load {n}", client_id=uuid.uuid4().hex)
        acked[chat_id].add(message_id)
        sent += 1
        if sent == KILL_AFTER and not killed.is_set():
            killed.set()
            writer = processes.alive(ctx.layout.pidfile("history-writer"))
            assert writer is not None, "no history writer is running"
            os.kill(writer.pid, signal.SIGKILL)

    async def restart_writer() -> None:
        await killed.wait()
        await asyncio.to_thread(apps.start, ctx, {"history-writer"})

    restart = asyncio.create_task(restart_writer())
    await asyncio.gather(
        *(
            send(n, sender if n % 2 else peer, chat_id)
            for n, (sender, peer, chat_id) in enumerate(plan)
        )
    )
    await restart
    assert sum(len(ids) for ids in acked.values()) == MESSAGES

    for user, _, chat_id in chats:

        async def complete(user: User = user, chat_id: str = chat_id) -> list[int] | None:
            page = await user.history(chat_id, limit="200")
            ids = [int(m["message_id"]) for m in page]
            return ids if len(set(ids)) >= len(acked[chat_id]) else None

        ids = await eventually(complete, seconds=60)
        assert len(ids) == len(set(ids)), f"duplicates in {chat_id}"
        assert set(ids) == acked[chat_id], f"history of {chat_id} differs from what was acked"
