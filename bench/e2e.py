"""The end-to-end load generator: held gRPC streams, senders at a fixed total rate, and the
accounting of every acknowledged message (received once per recipient, persisted once).

Work is split over ``procs`` processes (users ``k::procs``); they share CLOCK_MONOTONIC, so a
send timed in one process and its receipt in another are comparable.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from bench.population import Member, open_chats, register_and_login
from bench.stats import summary
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

MAX_IN_FLIGHT = 5000
DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Plan:
    members: list[Member]
    #: (sender index, peer index, chat id): message i is sent on route i % len(routes).
    routes: list[tuple[int, int, str]]
    rate: float
    duration: float
    body_bytes: int
    run: str


async def build_plan(
    bff: str, users: int, senders: int, rate: float, duration: float, body_bytes: int
) -> Plan:
    members = await register_and_login(bff, users, "bench")
    pairs = [(members[i], members[(i + 1) % users]) for i in range(senders)]
    chat_ids = await open_chats(bff, pairs)
    routes = [(i, (i + 1) % users, chat_ids[i]) for i in range(senders)]
    return Plan(members, routes, rate, duration, body_bytes, uuid.uuid4().hex[:8])


def run(plan: Plan, procs: int, out: Path) -> dict[str, Any]:
    """Run the plan over ``procs`` worker processes and merge what they saw."""
    context = multiprocessing.get_context("spawn")  # grpc must not be forked
    ready = context.Queue()
    starts = [context.Queue() for _ in range(procs)]
    files = [out.with_name(f"{out.stem}.worker{k}.json") for k in range(procs)]
    workers = [
        context.Process(
            target=_worker, args=(asdict(plan), k, procs, ready, starts[k], str(files[k]))
        )
        for k in range(procs)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        message = ready.get(timeout=300)
        if message != "ready":
            raise RuntimeError(f"a worker failed to start: {message}")
    start_at = time.monotonic() + 1.0
    for queue in starts:
        queue.put(start_at)
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise RuntimeError(f"worker exited with {worker.exitcode}")
    parts = [json.loads(path.read_text()) for path in files]
    for path in files:
        path.unlink()
    return merge(plan, parts, start_at)


def _worker(raw: dict[str, Any], k: int, procs: int, ready: Any, start: Any, out: str) -> None:
    plan = Plan(
        members=[Member(**m) for m in raw["members"]],
        routes=[(int(r[0]), int(r[1]), str(r[2])) for r in raw["routes"]],
        rate=raw["rate"],
        duration=raw["duration"],
        body_bytes=raw["body_bytes"],
        run=raw["run"],
    )
    try:
        result = asyncio.run(_work(plan, k, procs, ready, start))
    except BaseException as exc:
        ready.put(f"{type(exc).__name__}: {exc}")
        raise
    Path(out).write_text(json.dumps(result))


async def _work(plan: Plan, k: int, procs: int, ready: Any, start: Any) -> dict[str, Any]:
    channels: dict[str, grpc.aio.Channel] = {}

    def stub(address: str) -> messaging_pb2_grpc.MessagingServiceAsyncStub:
        if address not in channels:
            channels[address] = grpc.aio.insecure_channel(address)
        return messaging_pb2_grpc.MessagingServiceStub(channels[address])

    received: list[tuple[str, int, float]] = []
    resumes = 0
    mine = [(index, m) for index, m in enumerate(plan.members) if index % procs == k]
    caught_up = asyncio.Event()
    pending = len(mine)

    async def hold(member: Member) -> None:
        nonlocal pending, resumes
        cursor = ""
        first = True
        while True:
            call = stub(member.server).Subscribe(
                messaging_pb2.SubscribeRequest(resume_cursor=cursor),
                metadata=(("authorization", f"Bearer {member.token}"),),
            )
            async for event in call:
                cursor = event.cursor
                kind = event.WhichOneof("event")
                if kind == "message":
                    received.append(
                        (event.message.client_message_id, member.user_id, time.monotonic())
                    )
                elif kind == "caught_up" and first:
                    first = False
                    pending -= 1
                    if pending == 0:
                        caught_up.set()
                elif kind == "resume_required":
                    resumes += 1
            await asyncio.sleep(0.05)

    holders = [asyncio.create_task(hold(m)) for _, m in mine]
    if mine:
        await asyncio.wait_for(caught_up.wait(), 120)
    ready.put("ready")
    start_at: float = await asyncio.to_thread(start.get)

    sends: dict[str, list[Any]] = {}
    errors: dict[str, int] = defaultdict(int)
    body = "x" * plan.body_bytes
    total = int(plan.rate * plan.duration)
    in_flight = 0
    overloaded = 0

    async def send(i: int, route: tuple[int, int, str]) -> None:
        nonlocal in_flight
        sender_index, peer_index, chat_id = route
        sender = plan.members[sender_index]
        cmid = f"{plan.run}-{i}"
        request = messaging_pb2.SendRequest(chat_id=chat_id, client_message_id=cmid, body=body)
        began = time.monotonic()
        try:
            reply = await stub(sender.server).Send(
                request, metadata=(("authorization", f"Bearer {sender.token}"),), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            return
        finally:
            in_flight -= 1
        sends[cmid] = [
            began,
            time.monotonic(),
            reply.message_id,
            [sender.user_id, plan.members[peer_index].user_id],
            chat_id,
        ]

    tasks = []
    for i in range(total):
        route = plan.routes[i % len(plan.routes)]
        if route[0] % procs != k:
            continue
        due = start_at + i / plan.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= MAX_IN_FLIGHT:
            overloaded += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(send(i, route)))
    await asyncio.gather(*tasks)
    await asyncio.sleep(DRAIN_SECONDS)
    for holder in holders:
        holder.cancel()
    for channel in channels.values():
        await channel.close()
    return {
        "sends": sends,
        "received": received,
        "errors": dict(errors),
        "overloaded": overloaded,
        "resumes": resumes,
    }


def merge(plan: Plan, parts: list[dict[str, Any]], start_at: float) -> dict[str, Any]:
    sends: dict[str, list[Any]] = {}
    receipts: dict[tuple[str, int], list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    for part in parts:
        sends.update(part["sends"])
        for cmid, user, at in part["received"]:
            receipts[(cmid, user)].append(at)
        for code, count in part["errors"].items():
            errors[code] += count
    ack_ms = [(s[1] - s[0]) * 1000 for s in sends.values()]
    e2e_ms: list[float] = []
    timeline: list[tuple[float, float]] = []
    lost = duplicates = 0
    for cmid, (began, _, _, recipients, _) in sends.items():
        for user in recipients:
            times = receipts.get((cmid, user), [])
            if not times:
                lost += 1
                continue
            duplicates += len(times) - 1
            latency = (min(times) - began) * 1000
            e2e_ms.append(latency)
            timeline.append((round(began - start_at, 3), round(latency, 3)))
    expected = int(plan.rate * plan.duration)
    return {
        "rate": plan.rate,
        "duration_s": plan.duration,
        "users": len(plan.members),
        "senders": len(plan.routes),
        "body_bytes": plan.body_bytes,
        "attempted": expected,
        "acked": len(sends),
        "send_errors": dict(errors),
        "generator_overloaded": sum(p["overloaded"] for p in parts),
        "stream_resumes": sum(p["resumes"] for p in parts),
        "acked_per_s": round(len(sends) / plan.duration, 1),
        "send_ack_ms": summary(ack_ms),
        "e2e_ms": summary(e2e_ms),
        "lost_deliveries": lost,
        "duplicate_deliveries": duplicates,
        "timeline": sorted(timeline),
        "_sends": sends,
    }


async def check_persisted(bff: str, plan: Plan, sends: dict[str, list[Any]]) -> dict[str, int]:
    """Every acknowledged message is in history exactly once (page through each chat)."""
    by_chat: dict[str, set[str]] = defaultdict(set)
    for cmid, entry in sends.items():
        by_chat[entry[4]].add(cmid)
    token_of = {chat_id: plan.members[s].token for s, _, chat_id in plan.routes}
    missing = duplicates = 0
    async with aiohttp.ClientSession() as http:
        for chat_id, expected in by_chat.items():
            seen: list[str] = []
            before = ""
            while True:
                query = f"limit=200&before={before}" if before else "limit=200"
                async with http.get(
                    f"{bff}/v1/chats/{chat_id}/messages?{query}",
                    headers={"Authorization": f"Bearer {token_of[chat_id]}"},
                ) as response:
                    page = await response.json()
                messages = page["messages"]
                seen += [m["client_message_id"] for m in messages]
                if not page["has_more"] or not messages:
                    break
                before = messages[-1]["message_id"]
            ours = [cmid for cmid in seen if cmid.startswith(f"{plan.run}-")]
            duplicates += len(ours) - len(set(ours))
            missing += len(expected - set(ours))
    return {"persisted_missing": missing, "persisted_duplicates": duplicates}
