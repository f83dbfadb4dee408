"""A message to a large group: send latency, end-to-end latency to every online member, CPU.

``members`` users exist (``bench/population.py:created_members``); the first ``online`` of them
hold a live stream. The first creates a group of all of them (the initial members, then the
rest a thousand per ``AddMembers`` call, as the API allows) and sends ``messages`` messages at
``rate`` per second. For each message: the send's latency (until Kafka holds every record),
and for each online member the time from the send's start until their stream showed it. CPU is
the machine's busy time during the sending, minus this process's (the generator: it also
reads every online member's stream), per message; and the marginal CPU per message: the same
less what the stack spent idle, streams held, in the 15 s just before. Offline members cost
what they cost the system (storage, chat state, the notifier's look at them), nothing in the
generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from typing import Any

from bench import cpu
from bench.population import Member, caught_up
from bench.reach import HERE
from bench.stats import summary
from chatlib.grpc_auth import bearer_metadata
from protos.chat.v1 import groups_pb2, groups_pb2_grpc, messaging_pb2, messaging_pb2_grpc

#: Users one CreateGroup or AddMembers call may name (``messaging/groups/rules.py``).
PER_CALL = 1000
#: How long the idle stack (the streams held, nothing sent) is measured before the sending.
IDLE_SECONDS = 15.0


async def group_messages(
    users: list[Member], online: int, messages: int, rate: float
) -> dict[str, Any]:
    members = len(users)
    streaming = users[:online]
    channels = {m.server: HERE.dial(m.server) for m in users[:online] + users[:1]}
    owner = users[0]
    started: dict[str, float] = {}
    received: dict[str, list[float]] = {}
    seen: dict[int, set[int]] = {m.user_id: set() for m in streaming}
    duplicates = 0
    delivered = 0
    #: Set once every online member has every acknowledged message (``expected`` is known
    #: then).
    complete = asyncio.Event()
    expected = 0

    async def read(member: Member, call: Any) -> None:
        nonlocal duplicates, delivered
        while True:
            event = await call.read()
            if not isinstance(event, messaging_pb2.ClientEvent):
                return
            message = event.message
            if event.WhichOneof("event") != "message" or message.HasField("change"):
                continue
            now = time.perf_counter()
            if message.message_id in seen[member.user_id]:
                duplicates += 1
                continue
            seen[member.user_id].add(message.message_id)
            received.setdefault(message.body, []).append(now)
            delivered += 1
            if expected and delivered >= expected:
                complete.set()

    calls = []
    for member in streaming:
        stub = messaging_pb2_grpc.MessagingServiceStub(channels[member.server])
        calls.append(
            stub.Subscribe(messaging_pb2.SubscribeRequest(), metadata=bearer_metadata(member.token))
        )
    await asyncio.gather(*(caught_up(call) for call in calls))
    readers = [asyncio.create_task(read(m, c)) for m, c in zip(streaming, calls, strict=True)]
    metadata = bearer_metadata(owner.token)
    groups = groups_pb2_grpc.GroupServiceStub(channels[owner.server])
    others = [m.user_id for m in users[1:]]
    group = await groups.CreateGroup(
        groups_pb2.CreateGroupRequest(
            name="bench", member_ids=others[: PER_CALL - 1], client_request_id=uuid.uuid4().hex
        ),
        metadata=metadata,
        timeout=60,
    )
    for start in range(PER_CALL - 1, len(others), PER_CALL):
        await groups.AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=group.chat_id,
                user_ids=others[start : start + PER_CALL],
                client_request_id=uuid.uuid4().hex,
            ),
            metadata=metadata,
            timeout=60,
        )
    sender = messaging_pb2_grpc.MessagingServiceStub(channels[owner.server])
    send_ms: list[float] = []
    acked = 0

    async def send(n: int) -> None:
        nonlocal acked
        body = f"group message {n}"
        began = time.perf_counter()
        started[body] = began
        await sender.Send(
            messaging_pb2.SendRequest(chat_id=group.chat_id, client_message_id=f"b{n}", body=body),
            metadata=metadata,
            timeout=30,
        )
        send_ms.append((time.perf_counter() - began) * 1000)
        acked += 1

    await asyncio.sleep(2 + members / 2000)  # the changes are delivered and written first
    with cpu.Sampler({**cpu.stack_pids(), "generator": os.getpid()}) as sampler:
        # The stack idle with the same streams held, just before: what the sending adds to
        # it is the marginal cost (at a couple of messages a second the idle stack is most
        # of the machine's busy time).
        idle_start = time.time()
        await asyncio.sleep(IDLE_SECONDS)
        window_start = time.time()
        sends = []
        for n in range(messages):
            sends.append(asyncio.create_task(send(n)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*sends)
        expected = acked * online
        if delivered >= expected:
            complete.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(complete.wait(), 30)
        # Until the history writer has caught up too: its work is part of the cost.
        await asyncio.sleep(2)
        window_end = time.time()
    first, last = sampler.window(window_start, window_end)
    usage = cpu.usage(first, last, ("generator",), acked)
    idle = cpu.usage(*sampler.window(idle_start, window_start), ("generator",), 0)
    usage["idle_system_cores"] = idle["system_cores"]
    if acked:
        added = (usage["system_cores"] - idle["system_cores"]) * usage["window_s"]
        usage["marginal_cpu_ms_per_msg"] = round(added / acked * 1000, 4)
    for call in calls:
        call.cancel()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for channel in channels.values():
        await channel.close()
    e2e = [
        (at - started[body]) * 1000
        for body, times in received.items()
        if body in started
        for at in times
    ]
    return {
        "members": members,
        "online": online,
        "messages": acked,
        "rate": rate,
        "deliveries": delivered,
        "lost_deliveries": acked * online - delivered,
        "duplicate_deliveries": duplicates,
        "send_ms": summary(send_ms),
        "e2e_ms": summary(e2e),
        "cpu": usage,
    }
