"""Live partition moves: how long until the streams of moved partitions run on their new owner.

Holds streams of synthetic users spread over every partition (tokens minted with the shared
key, as ``idle`` does), then moves half of each server's partitions to the other server and
back, through the config service's admin API. Per moved stream it records when the redirect
arrived and when the stream was caught up on the new owner, counted from the moment the
change was stored.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc

from bench.reach import HERE
from bench.stats import summary
from chatlib import tokens
from chatlib.hashing import partition_for
from chatlib.ownership import REFRESH_SECONDS
from chatlib.partitioning import Partitioning
from clients.stream import StreamState, events
from infra import catalog, modes
from infra.layout import Layout

#: Channels per server address; streams are spread over them (one HTTP/2 connection each).
CHANNELS_PER_SERVER = 4


@dataclass
class Held:
    user_id: int
    partition: int
    token: str
    state: StreamState
    caught_up_at: list[float] = field(default_factory=list)
    redirected_at: list[float] = field(default_factory=list)


def swapped(config: Partitioning) -> tuple[dict[str, Any], set[int]]:
    """The upper half of each of two servers' partitions goes to the other one."""
    if len(config.servers) != 2:
        raise SystemExit("the moves benchmark needs exactly two messaging servers")
    first, second = config.servers
    mine = {s.name: sorted(s.partitions()) for s in config.servers}
    give = {name: set(parts[len(parts) // 2 :]) for name, parts in mine.items()}
    keep = {name: set(parts) - give[name] for name, parts in mine.items()}
    owned = {first.name: keep[first.name] | give[second.name]}
    owned[second.name] = keep[second.name] | give[first.name]
    value = copy.deepcopy(config.to_value())
    for server in value["servers"]:
        server["ranges"] = _ranges(owned[server["name"]])
    return value, give[first.name] | give[second.name]


def _ranges(partitions: set[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for p in sorted(partitions):
        if ranges and ranges[-1][1] == p - 1:
            ranges[-1][1] = p
        else:
            ranges.append([p, p])
    return ranges


Channels = dict[tuple[str, int], grpc.aio.Channel]


async def _hold(stream: Held, channels: Channels) -> None:
    def channel_for(address: str) -> grpc.aio.Channel:
        key = (address, stream.user_id % CHANNELS_PER_SERVER)
        if key not in channels:
            channels[key] = HERE.dial(address)
        return channels[key]

    async for event in events(stream.state, stream.token, channel_for):
        kind = event.WhichOneof("event")
        if kind == "caught_up":
            stream.caught_up_at.append(time.monotonic())
        elif kind == "redirect":
            stream.redirected_at.append(time.monotonic())


async def partition_moves(
    config_url: str, admin_token: str, secret: str, streams: int, rounds: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with HERE.http(headers=headers) as http:
        async with http.get(f"{config_url}/v1/config/partitioning") as r:
            r.raise_for_status()
            original = Partitioning.parse((await r.json())["value"])
        moved_value, moving = swapped(original)
        held = []
        for n in range(streams):
            user = 10**15 + 7 * n
            partition = partition_for(user, original.partitions)
            held.append(
                Held(
                    user,
                    partition,
                    tokens.issue(secret, str(user), 3600),
                    StreamState(original.owner(partition).target),
                )
            )
        channels: Channels = {}
        tasks = [asyncio.create_task(_hold(s, channels)) for s in held]
        rounds_out = []
        try:
            await _until(lambda: all(s.caught_up_at for s in held), 120)
            for number in range(rounds):
                value = moved_value if number % 2 == 0 else original.to_value()
                marks = {id(s): (len(s.redirected_at), len(s.caught_up_at)) for s in held}
                async with http.put(f"{config_url}/v1/config/partitioning", json=value) as r:
                    r.raise_for_status()
                    stored_at = time.monotonic()
                moved = [s for s in held if s.partition in moving]

                def resumed(moved: list[Held] = moved, marks: dict[int, Any] = marks) -> bool:
                    return all(len(s.caught_up_at) > marks[id(s)][1] for s in moved)

                await _until(resumed, 120)
                redirect_ms = [
                    (s.redirected_at[marks[id(s)][0]] - stored_at) * 1000
                    for s in moved
                    if len(s.redirected_at) > marks[id(s)][0]
                ]
                resumed_ms = [(s.caught_up_at[-1] - stored_at) * 1000 for s in moved]
                rounds_out.append(
                    {
                        "moved_partitions": len(moving),
                        "moved_streams": len(moved),
                        "redirected_streams": len(redirect_ms),
                        "redirect_ms": summary(redirect_ms),
                        "resumed_ms": summary(resumed_ms),
                    }
                )
                await asyncio.sleep(2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in channels.values():
                await channel.close()
            async with http.put(
                f"{config_url}/v1/config/partitioning", json=original.to_value()
            ) as r:
                r.raise_for_status()
            await _placed_again(http)
    return {
        "streams": streams,
        "rounds": rounds_out,
        "refusals": sum(s.state.refusals for s in held),
        "retries": sum(s.state.retries for s in held),
    }


async def _placed_again(http: aiohttp.ClientSession, seconds: float = 60.0) -> None:
    """Return once every messaging server holds the partitions placed on it again (its
    ``/readyz`` says so) and every router has read the leases since: whatever runs next
    is routed as before this benchmark, not to a server still giving partitions back."""
    layout = Layout.from_env()
    ports = [app.ops_port for app in catalog.messaging_servers(modes.current(layout))]

    async def ready(port: int) -> bool:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    deadline = time.monotonic() + seconds
    while not all(await asyncio.gather(*(ready(port) for port in ports))):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the partitions were not back in place within {seconds} s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * REFRESH_SECONDS)


async def _until(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {seconds} s")
        await asyncio.sleep(0.05)
