"""Users, sessions and chats for a benchmark, created through the BFF as clients would, and
their gRPC streams held until caught up."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.reach import HERE
from protos.chat.v1 import messaging_pb2

PASSWORD = "bench-password-1"


@dataclass(frozen=True)
class Member:
    username: str
    user_id: int
    token: str
    server: str


async def register_and_login(bff: str, count: int, prefix: str, parallel: int = 8) -> list[Member]:
    gate = asyncio.Semaphore(parallel)
    run = uuid.uuid4().hex[:6]

    async def one(http: aiohttp.ClientSession, n: int) -> Member:
        name = f"{prefix}{run}n{n}"
        async with gate:
            while True:  # registrations are rate-limited per address: wait as told
                async with http.post(
                    f"{bff}/v1/users", json={"username": name, "password": PASSWORD}
                ) as response:
                    if response.status == 429:
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    if response.status != 201:
                        raise RuntimeError(
                            f"register {name}: {response.status} {await response.text()}"
                        )
                    break
            async with http.post(
                f"{bff}/v1/sessions", json={"username": name, "password": PASSWORD}
            ) as response:
                body = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"login {name}: {response.status} {body}")
        return Member(name, int(body["user_id"]), body["access_token"], body["messaging_server"])

    async with HERE.http() as http:
        return list(await asyncio.gather(*(one(http, n) for n in range(count))))


async def caught_up(call: Any) -> None:
    """Read a Subscribe call until its ``caught_up`` event (the stream is then live)."""
    while True:
        event = await call.read()
        if not isinstance(event, messaging_pb2.ClientEvent):
            raise RuntimeError("the stream ended before caught_up")
        if event.WhichOneof("event") == "caught_up":
            return


async def open_chats(bff: str, pairs: list[tuple[Member, Member]], parallel: int = 8) -> list[str]:
    gate = asyncio.Semaphore(parallel)

    async def one(http: aiohttp.ClientSession, a: Member, b: Member) -> str:
        async with (
            gate,
            http.post(
                f"{bff}/v1/chats/direct",
                json={"peer_id": str(b.user_id)},
                headers={"Authorization": f"Bearer {a.token}"},
            ) as response,
        ):
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"open chat: {response.status} {body}")
            return str(body["chat_id"])

    async with HERE.http() as http:
        return list(await asyncio.gather(*(one(http, a, b) for a, b in pairs)))
