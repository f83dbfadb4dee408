"""Users, sessions and chats for a benchmark, created through the BFF as clients would, and
their gRPC streams held until caught up."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc

from bench.reach import HERE
from bff import passwords
from chatlib import tokens
from chatlib.grpc_auth import bearer_metadata
from chatlib.hashing import partition_for
from chatlib.partitioning import Partitioning
from protos.chat.v1 import history_pb2, history_pb2_grpc, messaging_pb2

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


async def created_members(
    history: str, secret: str, config: Partitioning, count: int, prefix: str, parallel: int = 16
) -> list[Member]:
    """``count`` users made straight through history's ``CreateUser`` (as the BFF makes them,
    with its service identity) sharing one password hash, each with an access token minted with
    the shared key and routed to the server the placement gives their partition: a population
    of ten thousand costs seconds instead of the BFF's scrypt per registration and login (an
    hour of CPU here). What a scenario then measures goes through the public APIs as before."""
    password_hash = await passwords.hashed(PASSWORD)
    service = bearer_metadata(tokens.issue(secret, tokens.SERVICE_SUBJECT, 3600))
    run = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(parallel)
    channel = HERE.dial(history)
    stub = history_pb2_grpc.HistoryServiceStub(channel)

    async def one(n: int) -> Member:
        async with gate:
            for attempt in range(10):
                # A retry takes another name: its first try may have reserved this one.
                name = f"{prefix}{run}n{n}r{attempt}"
                request = history_pb2.CreateUserRequest(username=name, password_hash=password_hash)
                try:
                    user = await stub.CreateUser(request, metadata=service, timeout=30)
                    break
                except grpc.aio.AioRpcError as exc:
                    # Cassandra busy with the name reservations: UNAVAILABLE, retryable.
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == 9:
                        raise
                    await asyncio.sleep(0.2 * 2**attempt)
        partition = partition_for(user.user_id, config.partitions)
        server = next(s for s in config.servers if s.owns(partition))
        token = tokens.issue(secret, str(user.user_id), 3600)
        return Member(name, user.user_id, token, server.target)

    try:
        return list(await asyncio.gather(*(one(n) for n in range(count))))
    finally:
        await channel.close()
