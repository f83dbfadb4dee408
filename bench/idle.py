"""Idle streams on one messaging server: resident memory per held stream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.reach import HERE
from chatlib import tokens
from chatlib.hashing import partition_for
from chatlib.partitioning import Partitioning
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

STREAMS_PER_CHANNEL = 1000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def idle_streams(
    secret: str, config: Partitioning, server: str, pid: int, count: int
) -> dict[str, Any]:
    """Hold ``count`` streams of synthetic users routed to ``server`` (tokens minted with the
    shared key: Subscribe needs a valid token, not a registered user)."""
    target = config.server(server)
    if target is None:
        raise SystemExit(f"no server {server!r} in the partitioning config")
    users: list[int] = []
    candidate = 10**15
    while len(users) < count:
        candidate += 1
        if target.owns(partition_for(candidate, config.partitions)):
            users.append(candidate)
    before = rss_kib(pid)
    channels = [HERE.dial(target.target) for _ in range(count // STREAMS_PER_CHANNEL + 1)]
    calls = []
    ready = 0
    began = time.monotonic()
    for n, user in enumerate(users):
        token = tokens.issue(secret, str(user), 3600)
        stub = messaging_pb2_grpc.MessagingServiceStub(channels[n // STREAMS_PER_CHANNEL])
        calls.append(
            stub.Subscribe(
                messaging_pb2.SubscribeRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
        )
    for call in calls:
        event = await call.read()
        if (
            isinstance(event, messaging_pb2.ClientEvent)
            and event.WhichOneof("event") == "caught_up"
        ):
            ready += 1
    opened_s = time.monotonic() - began
    await asyncio.sleep(3)  # let allocations settle
    after = rss_kib(pid)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()
    return {
        "streams": count,
        "ready": ready,
        "open_seconds": round(opened_s, 1),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_kib_per_stream": round((after - before) / max(ready, 1), 2),
    }
