"""Three terminal clients (``python -m messaging.client``) hold a group conversation."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from tests.e2e.conftest import PASSWORD, Clients


async def _client(username: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "messaging.client",
        "chat",
        username,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CHAT_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"},
    )


async def _type(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(f"{line}\n".encode())
    await process.stdin.drain()


async def _wait_for(process: asyncio.subprocess.Process, text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while not any(text in line for line in seen):
            line = (await process.stdout.readline()).decode()
            assert line, f"client exited before showing {text!r}; it showed {seen}"
            seen.append(line)


async def test_three_terminal_clients_hold_a_group_conversation(clients: Clients) -> None:
    users = [await clients.user(prefix) for prefix in ("al", "bo", "ca")]
    alice, bob, carol = users
    processes = [await _client(user.username) for user in users]
    seen: list[list[str]] = [[], [], []]
    group = f"team{uuid.uuid4().hex[:6]}"
    try:
        for process, lines in zip(processes, seen, strict=True):
            await _wait_for(process, "ctrl-d quits", lines)
        await _type(processes[0], f"/new {group} {bob.username} {carol.username}")
        for process, lines in zip(processes, seen, strict=True):
            await _wait_for(process, f"created the group \u201c{group}\u201d", lines)
        for index, user in enumerate(users):
            await _type(processes[index], f"hello from {user.username}")
            for process, lines in zip(processes, seen, strict=True):
                await _wait_for(process, f"{user.username}: hello from {user.username}", lines)
        await _type(processes[1], "/members")
        await _wait_for(processes[1], f"{alice.username}", seen[1])
        await _wait_for(processes[1], "owner", seen[1])
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
