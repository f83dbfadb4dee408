"""How long a user whose messaging server dies keeps showing online: a contact on the other
server holds a stream, the user holds one on the victim, the victim is killed (SIGKILL), and
the contact's stream is timed until it says the user went offline. The victim is started again
(``./dev restart``) after each round."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import grpc

from bench.population import Member, caught_up, open_chats, register_and_login
from bench.reach import HERE
from bench.stats import summary
from chatlib.grpc_auth import bearer_metadata
from infra import processes
from infra.layout import Layout
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

#: Presence remembers who shares a chat for 5 s (messaging/signals/presence.py CONTACTS_SECONDS).
CONTACTS_SECONDS = 5.5


async def server_death(bff: str, rounds: int) -> dict[str, Any]:
    layout = Layout.from_env()
    seconds: list[float] = []
    for _ in range(rounds):
        watcher, victim_user = await _pair_on_two_servers(bff)
        victim = "messaging-" + ("m1" if victim_user.server.endswith(":7101") else "m2")
        await open_chats(bff, [(watcher, victim_user)])
        await asyncio.sleep(CONTACTS_SECONDS)
        async with (
            HERE.dial(watcher.server) as near,
            HERE.dial(victim_user.server) as far,
        ):
            watching = _subscribe(near, watcher)
            await caught_up(watching)
            held = _subscribe(far, victim_user)
            await caught_up(held)
            await _presence(watching, victim_user.user_id, online=True)
            tracked = processes.alive(layout.pidfile(victim))
            if tracked is None:
                raise SystemExit(f"{victim} is not running; ./dev up first")
            killed = time.monotonic()
            os.kill(tracked.pid, signal.SIGKILL)
            await _presence(watching, victim_user.user_id, online=False)
            seconds.append(round(time.monotonic() - killed, 2))
            watching.cancel()
            held.cancel()
        restart = await asyncio.create_subprocess_exec(
            "./dev", "restart", victim, cwd=layout.project, stdout=asyncio.subprocess.DEVNULL
        )
        if await restart.wait() != 0:
            raise RuntimeError(f"./dev restart {victim} failed")
    return {"rounds": rounds, "offline_after_s": seconds, "summary_s": summary(seconds)}


async def _pair_on_two_servers(bff: str) -> tuple[Member, Member]:
    [first] = await register_and_login(bff, 1, "pres")
    while True:
        [other] = await register_and_login(bff, 1, "pres")
        if other.server != first.server:
            return first, other


def _subscribe(channel: grpc.aio.Channel, member: Member) -> Any:
    return messaging_pb2_grpc.MessagingServiceStub(channel).Subscribe(
        messaging_pb2.SubscribeRequest(), metadata=bearer_metadata(member.token)
    )


async def _presence(call: Any, user_id: int, *, online: bool) -> None:
    async with asyncio.timeout(60):
        while True:
            event = await call.read()
            if not isinstance(event, messaging_pb2.ClientEvent):
                raise RuntimeError("the watching stream ended")
            kind = event.WhichOneof("event")
            if kind == "presence" and (event.presence.user_id, event.presence.online) == (
                user_id,
                online,
            ):
                return
