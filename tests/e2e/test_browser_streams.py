"""The browsers' live stream at the protocol level, with a Python client: the WebSocket and
SSE bridges have Subscribe's semantics (resume, caught_up, live), carry sends, refuse what
they must, and cut a browser that does not read loose with a cursor."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any

import aiohttp
import pytest

from chatlib import tokens
from chatlib.hashing import partition_for
from tests.e2e.conftest import (
    BFF,
    FOLLOWERS,
    Admin,
    Clients,
    User,
    applied_everywhere,
    eventually,
    jwt_secret,
    messaging_ready,
)
from tests.e2e.test_partition_moves import swapped

WS = BFF.replace("http", "ws", 1) + "/v1/stream/ws"


async def _socket(
    http: aiohttp.ClientSession, user: User, cursor: str = ""
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(WS)
    await ws.send_json({"type": "hello", "access_token": user.token, "cursor": cursor})
    return ws


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str | None = None) -> dict[str, Any]:
    """The next event (of ``kind``, skipping others)."""
    while True:
        frame = await asyncio.wait_for(ws.receive(), 20)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        event = json.loads(frame.data)
        if kind is None or event["type"] == kind:
            return dict(event)


async def _messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    return [await _next(ws, "message") for _ in range(count)]


async def test_websocket_resume_yields_missed_messages_once_then_caught_up_then_live(
    clients: Clients,
) -> None:
    alice, bob, chat = await clients.pair()
    async with aiohttp.ClientSession() as http:
        ws = await _socket(http, bob)
        cursor = (await _next(ws, "caught_up"))["cursor"]
        await alice.send(chat, "first")
        first = await _next(ws, "message")
        assert first["message"]["body"] == "first"
        cursor = first["cursor"]
        await ws.close()

        missed = [await alice.send(chat, f"missed {n}") for n in range(3)]
        ws = await _socket(http, bob, cursor)
        replayed = []
        while (event := await _next(ws))["type"] != "caught_up":
            replayed.append(event)
        assert [int(e["message"]["message_id"]) for e in replayed] == missed
        live = await alice.send(chat, "live")
        assert int((await _next(ws, "message"))["message"]["message_id"]) == live
        await ws.close()


async def test_a_send_over_the_websocket_is_idempotent_like_http(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    async with aiohttp.ClientSession() as http:
        ws_alice = await _socket(http, alice)
        ws_bob = await _socket(http, bob)
        await _next(ws_alice, "caught_up")
        await _next(ws_bob, "caught_up")
        key = uuid.uuid4().hex
        frame = {"type": "send", "chat_id": chat, "client_message_id": key, "body": "hi"}
        await ws_alice.send_json({**frame, "request_id": "one"})
        sent = await _next(ws_alice, "sent")
        assert sent["request_id"] == "one"
        assert sent["duplicate"] is False
        await ws_alice.send_json({**frame, "request_id": "two"})
        again = await _next(ws_alice, "sent")
        assert again["request_id"] == "two"
        assert again["duplicate"] is True
        assert again["message_id"] == sent["message_id"]
        # Over HTTP with the same key: the same message.
        status, body = await alice.post(
            f"/v1/chats/{chat}/messages", {"client_message_id": key, "body": "hi"}
        )
        assert (status, body["message_id"]) == (200, sent["message_id"])
        # Bob sees it once.
        got = await _next(ws_bob, "message")
        assert got["message"]["message_id"] == sent["message_id"]
        await alice.send(chat, "marker")
        assert (await _next(ws_bob, "message"))["message"]["body"] == "marker"
        # A bad send is answered, and the socket goes on.
        await ws_alice.send_json({"type": "send", "request_id": 3, "chat_id": chat, "body": "x"})
        failed = await _next(ws_alice, "send_failed")
        assert failed["request_id"] == 3
        assert failed["status"] == 400
        assert "client_message_id" in failed["detail"]
        await ws_alice.send_json({**frame, "request_id": "four", "client_message_id": "k2"})
        assert (await _next(ws_alice, "sent"))["request_id"] == "four"


async def test_websocket_refusals(clients: Clients) -> None:
    user = await clients.user("wsbad")
    async with aiohttp.ClientSession() as http:
        # No hello, a wrong token, a bad first frame: closed with a code that says which.
        for hello, code in (
            ({"type": "hello", "access_token": "not-a-token"}, 4401),
            ({"type": "send"}, 4400),
            ("not json", 4400),
        ):
            ws = await http.ws_connect(WS)
            await (ws.send_json(hello) if isinstance(hello, dict) else ws.send_str(hello))
            error = await _next(ws, "error")
            assert error["detail"]
            closing = await asyncio.wait_for(ws.receive(), 10)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == code
        # An oversize frame: 1009.
        ws = await _socket(http, user)
        await _next(ws, "caught_up")
        await ws.send_str(json.dumps({"type": "send", "body": "x" * 70_000}))
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1009
        # A page from an origin that is not allowed cannot open a stream.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(WS, headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403
        # A plain GET is told to upgrade.
        async with http.get(WS.replace("ws", "http", 1)) as response:
            assert response.status == 426


async def test_logout_ends_the_websocket_with_4401(clients: Clients) -> None:
    user = await clients.user("wsout")
    async with aiohttp.ClientSession() as http:
        ws = await _socket(http, user)
        await _next(ws, "caught_up")
        async with http.delete(f"{BFF}/v1/sessions/current", headers=user.auth) as r:
            assert r.status == 204
        error = await _next(ws, "error")
        assert error["code"] == "UNAUTHENTICATED"
        assert "logged out" in error["detail"]
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4401


async def test_a_browser_that_does_not_read_is_cut_loose_with_a_cursor(clients: Clients) -> None:
    bob = await clients.user("slowbob")
    # More than the kernel buffers of a loopback connection hold (4 MiB on each side).
    senders = [await clients.user("slowsender") for _ in range(25)]
    chats = [await sender.open_chat(bob) for sender in senders]
    # A raw WebSocket with a small receive buffer that reads nothing after the handshake.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(BFF.rsplit(":", 1)[1])))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"GET /v1/stream/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    hello = json.dumps({"type": "hello", "access_token": bob.token}).encode()
    writer.write(bytes([0x81, 0x80 | 126]) + len(hello).to_bytes(2, "big") + b"\0\0\0\0" + hello)
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    body = "y" * 4000

    async def burst(sender: User, chat: str) -> None:
        for n in range(100):  # within the default send burst
            await sender.send(chat, body, f"slow-{n}")

    await asyncio.gather(*(burst(s, c) for s, c in zip(senders, chats, strict=True)))
    # Now read what was queued for it: the stream ends with close code 4000 and a cursor.
    data = b""
    async with asyncio.timeout(60):
        while chunk := await reader.read(1 << 20):
            data += chunk
    writer.close()
    close = data.rfind(b"\x88")
    assert close > 0, data[-200:]
    frame = data[close:]
    assert int.from_bytes(frame[2:4], "big") == 4000, frame[:40]
    assert frame[4:].startswith(b"resume v1."), frame[:40]
    # Others were never held up: bob's other device gets a message at once.
    other = await clients.subscribe(bob)
    await other.caught_up()
    await senders[0].send(chats[0], "still flowing")
    assert (await other.messages(1))[0].message.body == "still flowing"


async def test_an_sse_reader_that_stalls_is_cut_loose(clients: Clients) -> None:
    bob = await clients.user("slowsse")
    senders = [await clients.user("slowssesender") for _ in range(25)]
    chats = [await sender.open_chat(bob) for sender in senders]
    async with clients.http.post(f"{BFF}/v1/stream/tickets", headers=bob.auth) as r:
        ticket = (await r.json())["ticket"]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(BFF.rsplit(":", 1)[1])))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET /v1/stream/sse?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    body = "z" * 4000

    async def burst(sender: User, chat: str) -> None:
        for n in range(100):
            await sender.send(chat, body, f"slowsse-{n}")

    await asyncio.gather(*(burst(s, c) for s, c in zip(senders, chats, strict=True)))
    # What was queued arrives, then the response ends (the last chunk of a chunked body).
    data = b""
    async with asyncio.timeout(60):
        while not data.endswith(b"0\r\n\r\n"):
            chunk = await reader.read(1 << 20)
            assert chunk, "the connection closed without ending the response"
            data += chunk
    writer.close()
    assert data.count(b"event: message") < 2500  # cut before everything was delivered
    assert b"id: v1." in data  # the browser knows where to resume
    other = await clients.subscribe(bob)
    await other.caught_up()
    await senders[0].send(chats[0], "still flowing")
    assert (await other.messages(1))[0].message.body == "still flowing"


async def test_sse_with_a_ticket_resumes_from_last_event_id(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    sent = [await alice.send(chat, f"sse {n}") for n in range(2)]
    async with aiohttp.ClientSession() as http:

        async def ticket() -> str:
            async with http.post(f"{BFF}/v1/stream/tickets", headers=bob.auth) as r:
                assert r.status == 201
                return str((await r.json())["ticket"])

        # Live from now: caught_up first; then a message sent meanwhile arrives live, and
        # its id (the cursor) is where bob's next connection resumes.
        async with http.get(f"{BFF}/v1/stream/sse", params={"ticket": await ticket()}) as r:
            assert r.status == 200
            assert r.content_type == "text/event-stream"
            assert (await _sse_event(r))["event"] == "caught_up"
            marker = await alice.send(chat, "marker")
            while True:
                event = await _sse_event(r)
                data = json.loads(event["data"])
                if event["event"] == "message" and int(data["message"]["message_id"]) == marker:
                    cursor = event["id"]
                    break
        later = [await alice.send(chat, f"later {n}") for n in range(2)]
        headers = {"Last-Event-ID": cursor}
        async with http.get(
            f"{BFF}/v1/stream/sse", params={"ticket": await ticket()}, headers=headers
        ) as r:
            events = [await _sse_event(r) for _ in range(3)]
        assert [e["event"] for e in events] == ["message", "message", "caught_up"]
        ids = [int(json.loads(e["data"])["message"]["message_id"]) for e in events[:2]]
        assert ids == later  # nothing from before the cursor (the earlier ones, the marker)
        assert not set(ids) & {*sent, marker}
        # A ticket works once; a made-up one never.
        spent = await ticket()
        async with http.get(f"{BFF}/v1/stream/sse", params={"ticket": spent}) as r:
            await _sse_event(r)
        for bad in (spent, "made-up"):
            async with http.get(f"{BFF}/v1/stream/sse", params={"ticket": bad}) as r:
                assert r.status == 401
                assert "ticket" in (await r.json())["detail"]
        # And a foreign origin is refused before the ticket is spent.
        good = await ticket()
        async with http.get(
            f"{BFF}/v1/stream/sse",
            params={"ticket": good},
            headers={"Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403


async def _sse_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    fields: dict[str, str] = {}
    async with asyncio.timeout(20):
        while True:
            line = (await response.content.readline()).decode().rstrip("\n")
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_the_websocket_follows_a_partition_move_without_dropping(
    clients: Clients, admin: Admin
) -> None:
    """The BFF follows the Redirect inside the cluster: the browser's socket stays open and
    gets every message once, sent before, during and after its partition moves."""
    config = (await admin.get("partitioning"))["value"]
    moved, moving = swapped(config)
    while True:  # a user whose partition moves
        bob = await clients.user("wsmove")
        if partition_for(bob.user_id, config["partitions"]) in moving:
            break
    alice = await clients.user("wsmovea")
    chat = await alice.open_chat(bob)
    async with aiohttp.ClientSession() as http:
        ws = await _socket(http, bob)
        await _next(ws, "caught_up")
        sent = [await alice.send(chat, "before")]
        status, body = await admin.put("partitioning", moved)
        assert status == 200, body
        sent += [await alice.send(chat, f"during {n}") for n in range(3)]
        await applied_everywhere("partitioning", body["version"], FOLLOWERS["partitioning"])
        await eventually(messaging_ready)
        sent += [await alice.send(chat, "after")]
        got = [int(e["message"]["message_id"]) for e in await _messages(ws, len(sent))]
        assert got == sent
        assert not ws.closed
        await alice.send(chat, "marker")
        assert (await _next(ws, "message"))["message"]["body"] == "marker"


async def test_a_websocket_ends_with_4401_when_its_token_expires(clients: Clients) -> None:
    user = await clients.user("wsexpiry")
    short = User(
        user.username,
        user.user_id,
        tokens.issue(jwt_secret(), str(user.user_id), 3),
        user.messaging_server,
        clients.http,
    )
    async with aiohttp.ClientSession() as http:
        ws = await _socket(http, short)
        await _next(ws, "caught_up")
        error = await _next(ws, "error")
        assert error["code"] == "UNAUTHENTICATED"
        assert "expired" in error["detail"]
        closing = await asyncio.wait_for(ws.receive(), 10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4401
