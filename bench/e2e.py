"""The end-to-end scenario: held streams, senders at a fixed total rate, CPU per message, and
the accounting of every acknowledged message (received once per recipient, persisted once).

The load itself comes from the compiled generator (``bench/generator.py``), so that it stays a
small share of the machine. This module
prepares its plan (users registered and logged in through the BFF, direct chats opened),
samples CPU while it runs, and turns what it saw into the result.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from bench import cpu, generator
from bench.population import Member, open_chats, register_and_login
from bench.reach import HERE, generator_tls
from bench.stats import summary

MAX_IN_FLIGHT = 5000
DRAIN_SECONDS = 3.0
#: Seconds at the start of the sending that the CPU figures leave out (connections warming).
#: The CPU window starts this long after the measured part does (never more than a quarter).
WINDOW_SLACK_SECONDS = 1.0


@dataclass(frozen=True)
class Route:
    sender: int
    chat_id: str
    #: Indexes into the members of everyone the message goes to (the sender included).
    recipients: list[int]


@dataclass(frozen=True)
class Plan:
    members: list[Member]
    routes: list[Route]
    rate: float
    duration: float
    body_bytes: int
    run: str
    target: str = "chat"
    peer_addr: str = ""
    #: Seconds sent before ``duration``: accounted for loss and duplicates like the rest, but
    #: left out of latency and CPU (connections, caches and JITs warming up).
    warmup: float = 0.0
    #: Receipts and typing on: holders mark delivered and read, senders say they type.
    receipts: bool = False

    @property
    def warmup_sends(self) -> int:
        return int(self.rate * self.warmup)

    def for_generator(self) -> dict[str, Any]:
        return {
            "members": [
                {"user_id": m.user_id, "token": m.token, "server": m.server} for m in self.members
            ],
            "routes": [asdict(r) for r in self.routes],
            "rate": self.rate,
            "duration": self.warmup + self.duration,
            "body_bytes": self.body_bytes,
            "run": self.run,
            "max_in_flight": MAX_IN_FLIGHT,
            "conns": 4,
            **generator_tls(),
            "drain": DRAIN_SECONDS,
            "target": self.target,
            "peer_addr": self.peer_addr,
            "receipts": self.receipts,
        }


async def build_plan(
    bff: str,
    users: int,
    senders: int,
    rate: float,
    duration: float,
    body_bytes: int,
    warmup: float = 0.0,
    receipts: bool = False,
) -> Plan:
    """``users`` users holding streams; the first ``senders`` each write to the next user."""
    members = await register_and_login(bff, users, "bench")
    pairs = [(members[i], members[(i + 1) % users]) for i in range(senders)]
    chat_ids = await open_chats(bff, pairs)
    routes = [Route(i, chat_ids[i], [i, (i + 1) % users]) for i in range(senders)]
    return Plan(
        members,
        routes,
        rate,
        duration,
        body_bytes,
        uuid.uuid4().hex[:8],
        warmup=warmup,
        receipts=receipts,
    )


def peer_plan(
    users: int, senders: int, rate: float, duration: float, body: int, addr: str, warmup: float
) -> Plan:
    """The same shape of load against the peer server (which has no accounts: ids are names)."""
    members = [Member(f"peer{n}", 1_000_000 + n, "", addr) for n in range(users)]
    routes = []
    for i in range(senders):
        a, b = sorted((members[i].user_id, members[(i + 1) % users].user_id))
        routes.append(Route(i, f"d:{a}:{b}", [i, (i + 1) % users]))
    return Plan(members, routes, rate, duration, body, uuid.uuid4().hex[:8], "peer", addr, warmup)


def run(plan: Plan, accounted: dict[str, int]) -> dict[str, Any]:
    """Run the generator over ``plan`` while sampling CPU of the ``accounted`` processes."""
    raw, sampler = generator.run(plan.for_generator(), accounted)
    result = merge(plan, raw)
    start = raw["send_start_unix_ns"] / 1e9 + plan.warmup
    end = raw["send_end_unix_ns"] / 1e9
    first, last = sampler.window(start + min(WINDOW_SLACK_SECONDS, (end - start) / 4), end)
    # Message i was due i / rate seconds after the first; count those due inside the window.
    first_index = round((first.wall - start) * plan.rate) + plan.warmup_sends
    last_index = round((last.wall - start) * plan.rate) + plan.warmup_sends
    in_window = sum(1 for cmid in raw["sends"] if first_index <= _index(cmid) <= last_index)
    result["cpu"] = cpu.usage(first, last, ("generator", "bench"), in_window)
    return result


def _index(cmid: str) -> int:
    """Which message of the run a client message id names (the generator numbers them)."""
    return int(cmid.rsplit("-", 1)[1])


def merge(plan: Plan, raw: dict[str, Any]) -> dict[str, Any]:
    sends: dict[str, list[Any]] = raw["sends"]
    receipts: dict[tuple[str, int], list[float]] = defaultdict(list)
    for cmid, user, at in raw["received"] or []:
        receipts[(cmid, int(user))].append(at)
    warm = plan.warmup_sends
    ack_ms: list[float] = []
    e2e_ms: list[float] = []
    timeline: list[tuple[float, float]] = []
    lost = duplicates = measured = 0
    for cmid, (due, acked, _, recipients, _) in sends.items():
        index = _index(cmid)
        counted = index >= warm
        if counted:
            measured += 1
            ack_ms.append((acked - due) * 1000)
        for user in recipients:
            times = receipts.get((cmid, int(user)), [])
            if not times:
                lost += 1
                continue
            duplicates += len(times) - 1
            if counted:
                latency = (min(times) - due) * 1000
                e2e_ms.append(latency)
                timeline.append((round((index - warm) / plan.rate, 3), round(latency, 3)))
    expected = int(plan.rate * (plan.warmup + plan.duration))
    return {
        "target": plan.target,
        "rate": plan.rate,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
        "users": len(plan.members),
        "senders": len(plan.routes),
        "body_bytes": plan.body_bytes,
        "attempted": expected,
        "acked": len(sends),
        "send_errors": dict(raw["errors"]),
        "generator_overloaded": raw["overloaded"],
        "stream_resumes": raw["resumes"],
        "receipts": plan.receipts,
        "marks_sent": raw.get("marks", 0),
        "typing_sent": raw.get("typing", 0),
        "acked_per_s": round(measured / plan.duration, 1),
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
    token_of = {r.chat_id: plan.members[r.sender].token for r in plan.routes}
    missing = duplicates = 0
    async with HERE.http() as http:

        async def one(chat_id: str, expected: set[str]) -> tuple[int, int]:
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
            return len(ours) - len(set(ours)), len(expected - set(ours))

        gate = asyncio.Semaphore(8)

        async def gated(chat_id: str, expected: set[str]) -> tuple[int, int]:
            async with gate:
                return await one(chat_id, expected)

        for dup, miss in await asyncio.gather(*(gated(c, e) for c, e in by_chat.items())):
            duplicates += dup
            missing += miss
    return {"persisted_missing": missing, "persisted_duplicates": duplicates}
