"""Browsers' streams through the BFF: memory per idle WebSocket, and latency WebSocket to
WebSocket beside gRPC to gRPC for the same messages."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from typing import Any

import aiohttp
import grpc

from bench import cpu
from bench.idle import rss_kib
from bench.population import Member, caught_up, open_chats, register_and_login
from bench.reach import HERE
from bench.stats import summary
from chatlib import tokens
from chatlib.grpc_auth import bearer_metadata
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc


def _ws_url(bff: str) -> str:
    return bff.replace("http", "ws", 1) + "/v1/stream/ws"


async def _caught_up(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        frame = await ws.receive()
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket ended before caught_up: {frame}")
        if json.loads(frame.data)["type"] == "caught_up":
            return


async def idle_websockets(
    bff: str, secret: str, pid: int, count: int, messaging: dict[str, int]
) -> dict[str, Any]:
    """Hold ``count`` WebSockets on the BFF whose pid is given, each past its hello and caught
    up (tokens minted with the shared key: a stream needs a valid token, not a registered
    user); the BFF's resident memory before and after, per connection, and the messaging
    servers' (``messaging``: name to pid), where each browser's stream is held too."""
    before = rss_kib(pid)
    servers_before = {name: rss_kib(server) for name, server in messaging.items()}
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    gate = asyncio.Semaphore(200)
    began = time.monotonic()
    async with HERE.http(limit=0) as http:

        async def one(n: int) -> None:
            async with gate:
                ws = await http.ws_connect(_ws_url(bff), heartbeat=None, autoping=True)
                token = tokens.issue(secret, str(10**15 + 500_000 + n), 3600)
                await ws.send_json({"type": "hello", "access_token": token})
                await _caught_up(ws)
                sockets.append(ws)

        await asyncio.gather(*(one(n) for n in range(count)))
        opened = time.monotonic() - began
        await asyncio.sleep(5)  # let allocations settle
        after = rss_kib(pid)
        servers_after = {name: rss_kib(server) for name, server in messaging.items()}
        for ws in sockets:
            await ws.close()
    grown = sum(servers_after[name] - servers_before[name] for name in messaging)
    return {
        "connections": count,
        "ready": len(sockets),
        "open_seconds": round(opened, 1),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_kib_per_conn": round((after - before) / max(len(sockets), 1), 2),
        "messaging_rss_before_kib": servers_before,
        "messaging_rss_after_kib": servers_after,
        "messaging_rss_kib_per_conn": round(grown / max(len(sockets), 1), 2),
    }


async def ws_e2e(bff: str, rate: float, duration: float, users: int) -> dict[str, Any]:
    """``users`` people in pairs; each holds a WebSocket (a browser) and a gRPC stream (a phone).
    Half of them send over their WebSocket at ``rate`` in total; each message's latency from
    the moment it was due to its arrival is measured on the recipient's WebSocket and on the
    recipient's gRPC stream, the same messages on both paths."""
    members = await register_and_login(bff, users, "wsbench")
    pairs = [(members[n], members[n + 1]) for n in range(0, users - 1, 2)]
    chats = await open_chats(bff, pairs)
    due: dict[str, float] = {}
    arrived: dict[str, dict[str, float]] = {"websocket": {}, "grpc": {}}
    channels: dict[str, grpc.aio.Channel] = {}
    tasks: list[asyncio.Task[None]] = []
    sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
    async with HERE.http(limit=0) as http:

        async def browser(member: Member) -> None:
            ws = await http.ws_connect(_ws_url(bff))
            await ws.send_json({"type": "hello", "access_token": member.token})
            await _caught_up(ws)
            sockets[member.user_id] = ws

            async def listen() -> None:
                async for frame in ws:
                    event = json.loads(frame.data)
                    if event["type"] == "message":
                        key = event["message"]["client_message_id"]
                        if event["message"]["sender_id"] != str(member.user_id):
                            arrived["websocket"].setdefault(key, time.perf_counter())

            tasks.append(asyncio.create_task(listen()))

        async def phone(member: Member) -> None:
            channel = channels.setdefault(member.server, HERE.dial(member.server))
            call = messaging_pb2_grpc.MessagingServiceStub(channel).Subscribe(
                messaging_pb2.SubscribeRequest(),
                metadata=bearer_metadata(member.token),
            )
            await caught_up(call)

            async def listen() -> None:
                # read(), not iteration: the two may not be mixed on one call.
                while isinstance(event := await call.read(), messaging_pb2.ClientEvent):
                    if event.WhichOneof("event") == "message" and event.message.sender_id != (
                        member.user_id
                    ):
                        arrived["grpc"].setdefault(
                            event.message.client_message_id, time.perf_counter()
                        )

            tasks.append(asyncio.create_task(listen()))

        await asyncio.gather(*(browser(m) for m in members), *(phone(m) for m in members))
        interval = len(pairs) / rate
        start = time.perf_counter() + 0.5

        async def sender(index: int, sender: Member, chat: str) -> None:
            ws = sockets[sender.user_id]
            n = 0
            while True:
                at = start + index * (interval / len(pairs)) + n * interval
                if at - start > duration:
                    return
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                key = uuid.uuid4().hex
                due[key] = at
                await ws.send_json(
                    {"type": "send", "chat_id": chat, "client_message_id": key, "body": "x" * 100}
                )
                n += 1

        # The CPU of the whole machine less this process (the browsers, the phones and the
        # senders), from a second in (less in a short run) to the last send: what a message
        # costs the stack when it goes to a WebSocket and to a gRPC stream.
        with cpu.Sampler({**cpu.stack_pids(), "generator": os.getpid()}) as sampler:
            await asyncio.gather(
                *(
                    sender(i, a, chat)
                    for i, ((a, _), chat) in enumerate(zip(pairs, chats, strict=True))
                )
            )
        to_wall = time.time() - time.perf_counter()
        warmup = min(1.0, duration / 4)  # a short run (the smoke test's) keeps a window
        first, last = sampler.window(start + warmup + to_wall, time.time())
        due_in_window = sum(1 for at in due.values() if first.wall <= at + to_wall <= last.wall)
        await asyncio.sleep(3)
        for task in tasks:
            task.cancel()
        for ws in sockets.values():
            await ws.close()
    for channel in channels.values():
        await channel.close()
    result: dict[str, Any] = {"rate": rate, "duration": duration, "users": users, "sent": len(due)}
    result["cpu"] = cpu.usage(first, last, ("generator",), due_in_window)
    for path, times in arrived.items():
        latencies = sorted((times[k] - due[k]) * 1000 for k in due if k in times)
        result[f"{path}_ms"] = summary(latencies)
        result[f"{path}_missing"] = len(due) - len(latencies)
    return result
