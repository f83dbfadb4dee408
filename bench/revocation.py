"""How long a logged-out session's live stream outlives the logout.

Each user holds a gRPC stream; the sessions are then logged out (DELETE /v1/sessions/current)
a few at a time. Two figures per logout, both from the moment the request was sent: when the
stream ended (UNAUTHENTICATED) and when the logout was acknowledged. A logout is acknowledged
only after every service applied it, so a stream normally ends before its acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import grpc

from bench.population import Member, caught_up, register_and_login
from bench.reach import HERE
from bench.stats import summary
from chatlib.grpc_auth import bearer_metadata
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc


async def _ended(call: Any) -> float:
    """When the stream ended with UNAUTHENTICATED (perf_counter seconds)."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        return time.perf_counter()
    raise RuntimeError("the stream ended without UNAUTHENTICATED")


async def revocation(bff: str, users: int, parallel: int) -> dict[str, Any]:
    members = await register_and_login(bff, users, "revoke")
    channels = {m.server: HERE.dial(m.server) for m in members}
    calls = []
    for member in members:
        stub = messaging_pb2_grpc.MessagingServiceStub(channels[member.server])
        call = stub.Subscribe(
            messaging_pb2.SubscribeRequest(),
            metadata=bearer_metadata(member.token),
        )
        calls.append(call)
    await asyncio.gather(*(caught_up(call) for call in calls))
    gate = asyncio.Semaphore(parallel)
    ended_ms: list[float] = []
    acked_ms: list[float] = []

    async def logout(http: aiohttp.ClientSession, member: Member, call: Any) -> None:
        async with gate:
            ending = asyncio.ensure_future(_ended(call))
            began = time.perf_counter()
            async with http.delete(
                f"{bff}/v1/sessions/current",
                headers={"Authorization": f"Bearer {member.token}"},
            ) as response:
                if response.status != 204:
                    raise RuntimeError(f"logout: {response.status} {await response.text()}")
            acked_ms.append((time.perf_counter() - began) * 1000)
            ended_ms.append((await asyncio.wait_for(ending, 10) - began) * 1000)

    async with HERE.http() as http:
        await asyncio.gather(*(logout(http, m, c) for m, c in zip(members, calls, strict=True)))
    for channel in channels.values():
        await channel.close()
    return {
        "sessions": users,
        "parallel": parallel,
        "stream_ended_ms": summary(sorted(ended_ms)),
        "logout_acked_ms": summary(sorted(acked_ms)),
    }
