"""``bench partitions``: what more partitions cost the cluster, measured by adding them.

On the stack ``./dev up --cluster`` started (at its 12 partitions), for each count in turn:
grow to it with ``./dev admin grow`` (its wall time and how long sends were held), let the
cluster settle, then measure every stack process idle: CPU (fetch requests, replication and
lease renewals are all there is to do) and resident memory. Then restart one messaging server
(``./dev restart messaging-m3``): it hands its partitions to the others and takes them back,
so the restart's time is what moving a third of the partitions twice costs.

Partitions cannot be removed, so this leaves the cluster at the last count: ``./dev reset``
after it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import cpu
from infra.layout import Layout

#: After a growth: the consumer groups' rebalances and the leases of the new partitions.
SETTLE_SECONDS = 20.0
HELD = re.compile(r"sends released after (\d+) ms")


def _dev(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["./dev", *args], cwd=project, capture_output=True, text=True, timeout=900, check=False
    )


def _partitions(project: Path) -> int:
    found = _dev(project, "admin", "get", "partitioning")
    if found.returncode != 0:
        raise SystemExit(f"./dev admin get partitioning failed: {found.stderr[-500:]}")
    return int(json.loads(found.stdout)["value"]["partitions"])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _kind(name: str) -> str:
    """A process's kind: ``kafka-2`` and ``kafka`` are both ``kafka``."""
    return re.sub(r"-m?\d+$", "", name)


async def _idle(seconds: float) -> dict[str, Any]:
    pids = cpu.stack_pids()
    with cpu.Sampler(pids, interval=1.0) as sampler:
        await asyncio.sleep(seconds)
    first, last = sampler.snapshots[0], sampler.snapshots[-1]
    elapsed = last.wall - first.wall
    cores: dict[str, float] = {}
    memory: dict[str, int] = {}
    for name, pid in pids.items():
        if name in first.cpu and name in last.cpu:
            kind = _kind(name)
            cores[kind] = cores.get(kind, 0.0) + (last.cpu[name] - first.cpu[name]) / elapsed
            memory[kind] = memory.get(kind, 0) + _rss_kib(pid)
    busy = elapsed * cpu.CORES - (last.idle - first.idle)
    return {
        "window_s": round(elapsed, 1),
        "machine_busy_cores": round(busy / elapsed, 3),
        "stack_cores": round(sum(cores.values()), 3),
        "cores_by_kind": {k: round(v, 4) for k, v in sorted(cores.items())},
        "rss_mib_by_kind": {k: round(v / 1024, 1) for k, v in sorted(memory.items())},
        "stack_rss_mib": round(sum(memory.values()) / 1024, 1),
    }


async def measure(counts: list[int], idle_seconds: float) -> dict[str, Any]:
    project = Layout.from_env().project
    levels = []
    for count in counts:
        current = await asyncio.to_thread(_partitions, project)
        growth: dict[str, Any] | None = None
        if count > current:
            started = time.monotonic()
            grown = await asyncio.to_thread(_dev, project, "admin", "grow", "--to", str(count))
            if grown.returncode != 0:
                raise SystemExit(f"growing to {count} failed: {grown.stderr[-2000:]}")
            held = HELD.search(grown.stdout)
            growth = {
                "from": current,
                "seconds": round(time.monotonic() - started, 1),
                "sends_held_ms": int(held.group(1)) if held else None,
            }
            await asyncio.sleep(SETTLE_SECONDS)
        elif count < current:
            raise SystemExit(f"the cluster has {current} partitions already; ./dev reset first")
        else:
            await asyncio.sleep(SETTLE_SECONDS)  # a stack just started is still warming up
        idle = await _idle(idle_seconds)
        started = time.monotonic()
        restarted = await asyncio.to_thread(_dev, project, "restart", "messaging-m3")
        if restarted.returncode != 0:
            raise SystemExit(f"./dev restart messaging-m3 failed: {restarted.stderr[-2000:]}")
        restart_s = round(time.monotonic() - started, 1)
        print(
            f"{count} partitions: {idle['stack_cores']} cores idle, {idle['stack_rss_mib']} MiB;"
            f" growth {growth}; messaging-m3 restart {restart_s} s"
        )
        levels.append(
            {"partitions": count, "growth": growth, "idle": idle, "restart_m3_s": restart_s}
        )
        await asyncio.sleep(SETTLE_SECONDS)
    return {"levels": levels, "idle_seconds": idle_seconds}


async def hold_cost(rounds: int = 3, calls: int = 200_000) -> list[float]:
    """What the send hold adds to every produce while nothing is held: microseconds of CPU
    per ``SendHold.producing()`` entered and left, an empty loop's time subtracted, per round.
    Needs no stack: ``python -c "import asyncio, bench.partitions as p;
    print(asyncio.run(p.hold_cost()))"``."""
    from chatlib.live_config import Document, LiveSection
    from chatlib.partitioning import Partitioning
    from messaging.send.hold import SendHold

    section: LiveSection[Partitioning] = LiveSection("partitioning", Partitioning.parse)
    servers = [{"name": "m1", "address": "grpc://h:1", "ranges": [[0, 11]]}]
    section.offer(Document("partitioning", 1, {"partitions": 12, "servers": servers}, "b", "now"))
    hold = SendHold(section, None, "m1")  # type: ignore[arg-type]  # Redis only while held
    found = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            async with hold.producing():
                pass
        held = time.process_time() - started
        started = time.process_time()
        for _ in range(calls):
            pass
        empty = time.process_time() - started
        found.append(round((held - empty) / calls * 1e6, 2))
    return found
