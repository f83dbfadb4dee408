"""Three terminal clients (``python -m clients.terminal``) hold a group conversation."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

from tests.e2e.conftest import PASSWORD, Clients


async def _client(
    username: str, peer: str = "", cwd: Path | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.terminal",
        "chat",
        username,
        *(["--with", peer] if peer else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CHAT_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
    )


async def _type(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(f"{line}\n".encode())
    await process.stdin.drain()


async def _wait_for(
    process: asyncio.subprocess.Process, text: str, seen: list[str], start: int = 0
) -> None:
    """Read the client's lines into ``seen`` until one from ``start`` on holds ``text``."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while not any(text in line for line in seen[start:]):
            line = (await process.stdout.readline()).decode()
            assert line, f"client exited before showing {text!r}; it showed {seen}"
            seen.append(line)


async def test_three_terminal_clients_hold_a_group_conversation(
    clients: Clients, tmp_path: Path
) -> None:
    users = [await clients.user(prefix) for prefix in ("al", "bo", "ca")]
    alice, bob, carol = users
    homes = [tmp_path / user.username for user in users]
    for home in homes:
        home.mkdir()
    processes = [
        await _client(user.username, cwd=home) for user, home in zip(users, homes, strict=True)
    ]
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
        # The history writer stores the messages a moment after they are shown live.
        for _ in range(50):
            await _type(processes[2], "/search HELLO from")
            done = len(seen[2])
            await _wait_for(processes[2], " found", seen[2], start=done)
            if "-- 3 found" in seen[2][-1]:
                break
            await asyncio.sleep(0.2)
        assert f"] {alice.username}: hello from {alice.username}" in seen[2][-4], seen[2][-4:]
        assert f"] {carol.username}: hello from {carol.username}" in seen[2][-2], seen[2][-4:]

        # A file: alice sends it from disk, bob saves it with /get N, checked by its hash.
        notes = tmp_path / "notes.txt"
        notes.write_bytes(b"bring sunscreen\n" * 100)
        await _type(processes[0], f"/send-file {notes}")
        await _wait_for(processes[1], "notes.txt (text/plain, 2 KiB): /get ", seen[1])
        line = next(x for x in reversed(seen[1]) if "notes.txt (text/plain" in x)
        await _type(processes[1], f"/get {line.rsplit(' ', 1)[1].strip()}")
        await _wait_for(processes[1], "-- saved notes.txt (1600 bytes, checksum ok)", seen[1])
        assert (homes[1] / "notes.txt").read_bytes() == notes.read_bytes()

        # A profile: carol takes a display name and a picture; the others are told and show
        # the name over her words from then on.
        await _type(processes[2], "/name Carol C.")
        await _wait_for(processes[2], "-- you are shown as Carol C.", seen[2])
        await _wait_for(processes[0], f"-- {carol.username} changed their profile", seen[0])
        face = tmp_path / "carol.png"
        face.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
        await _type(processes[2], f"/picture {face}")
        await _wait_for(processes[2], "-- your picture is carol.png", seen[2])
        await _type(processes[2], "still here")
        await _wait_for(processes[0], "Carol C.: still here", seen[0])
        status, found = await alice.get(f"/v1/users/{carol.user_id}/avatar")
        assert (status, found["attachment"]["size"]) == (200, 108), found
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_terminal_clients_show_ticks_edits_reactions_typing_presence(
    clients: Clients,
) -> None:
    alice, bob = await clients.user("al"), await clients.user("bo")
    chat = await alice.open_chat(bob)
    processes = [await _client(alice.username, bob.username)]
    seen: list[list[str]] = [[], []]
    try:
        await _wait_for(processes[0], "chatting with", seen[0])
        # Bob comes online: Alice's client says so.
        processes.append(await _client(bob.username, alice.username))
        await _wait_for(processes[1], "chatting with", seen[1])
        await _wait_for(processes[0], f"{bob.username} is online", seen[0])
        await _type(processes[0], "hello bob")
        await _wait_for(processes[1], f"#1 {alice.username}: hello bob", seen[1])
        # Bob's client showed it, so it marked it read: Alice sees two ticks.
        await _wait_for(
            processes[0], f"\N{CHECK MARK}\N{CHECK MARK} #1 read by {bob.username}", seen[0]
        )
        await _type(processes[0], "/edit 1 hello, bob")
        await _wait_for(processes[1], f"{alice.username} edited #1: hello, bob", seen[1])
        await _type(processes[1], "/react 1 \N{THUMBS UP SIGN}")
        await _wait_for(processes[0], f"{bob.username} reacted \N{THUMBS UP SIGN} to #1", seen[0])
        status, _ = await alice.post(f"/v1/chats/{chat}/typing", {})
        assert status == 204
        await _wait_for(processes[1], f"{alice.username} is typing", seen[1])
        await _type(processes[0], "/who")
        await _wait_for(processes[0], "online", seen[0])
        # Bob quits: Alice's client shows him offline.
        assert processes[1].stdin is not None
        processes[1].stdin.close()
        await processes[1].wait()
        await _wait_for(processes[0], f"{bob.username} is offline (last seen", seen[0])
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
