"""CPU accounting for the benchmarks: the whole machine's busy time and each process's share.

The machine's busy time is ``elapsed x cores - delta(idle + iowait)`` from ``/proc/stat``: this
kernel accounts user and system time by sampling ticks, which under-counts short bursts, while
idle time is exact. Per process, ``utime + stime`` of ``/proc/<pid>/stat`` (and of the process's
threads, which the kernel sums there). A sampler thread takes a snapshot every half second, so
the steady part of a run (after warm-up, before the drain) can be cut out afterwards.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import catalog, processes
from infra.cluster import NODES
from infra.layout import Layout

TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
#: Every process ./dev starts, by the name of its pid file.
STACK = (
    "kafka",
    "cassandra",
    "redis",
    "jaeger",
    "seaweedfs",
    # Our services, the cluster's doubles included.
    *(app.name for app in catalog.every_app()),
    # The cluster's nodes and its balancer (./dev up --cluster).
    *(f"{kind}-{n}" for kind in ("sentinel", "redis", "kafka", "cassandra") for n in NODES),
    "balancer",
)


def process_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_seconds() -> float:
    """Idle plus iowait time of all cores since boot (the exact part of /proc/stat)."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(values[3]) + int(values[4])) / TICKS


def stack_pids(layout: Layout | None = None) -> dict[str, int]:
    """The pid of every stack process that is running now."""
    layout = layout or Layout.from_env()
    found = {}
    for name in STACK:
        tracked = processes.alive(layout.pidfile(name))
        if tracked is not None:
            found[name] = tracked.pid
    return found


@dataclass(frozen=True)
class Snapshot:
    wall: float
    idle: float
    cpu: dict[str, float]


@dataclass
class Sampler:
    """Snapshots of the machine and of named processes, every ``interval`` seconds."""

    pids: dict[str, int]
    interval: float = 0.5
    snapshots: list[Snapshot] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, name: str, pid: int) -> None:
        """Account a process started after the sampler (the generator)."""
        self.pids = {**self.pids, name: pid}

    def snapshot(self) -> Snapshot:
        cpu = {}
        for name, pid in self.pids.items():
            seconds = process_seconds(pid)
            if seconds is not None:
                cpu[name] = seconds
        return Snapshot(time.time(), idle_seconds(), cpu)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.snapshots.append(self.snapshot())
            if self._stop.wait(self.interval):
                self.snapshots.append(self.snapshot())
                return

    def window(self, start: float, end: float) -> tuple[Snapshot, Snapshot]:
        """The first snapshot at or after ``start`` and the last at or before ``end``."""
        inside = [s for s in self.snapshots if start <= s.wall <= end]
        if len(inside) < 2:
            raise ValueError("the window holds fewer than two CPU snapshots")
        return inside[0], inside[-1]


def usage(
    first: Snapshot, last: Snapshot, generator: tuple[str, ...], messages: int
) -> dict[str, Any]:
    """What the window cost: the machine, the system without the generator, each process.

    ``messages`` is the number of acknowledged messages whose send fell in the window.
    """
    elapsed = last.wall - first.wall
    busy = elapsed * CORES - (last.idle - first.idle)
    per_process = {
        name: last.cpu[name] - first.cpu[name]
        for name in last.cpu
        if name in first.cpu and last.cpu[name] >= first.cpu[name]
    }
    generator_seconds = sum(per_process.get(name, 0.0) for name in generator)
    system = busy - generator_seconds
    accounted = sum(v for k, v in per_process.items() if k not in generator)
    per_message = (lambda seconds: round(seconds / messages * 1000, 4)) if messages else None
    return {
        "window_s": round(elapsed, 2),
        "messages": messages,
        "msgs_per_s": round(messages / elapsed, 1) if elapsed else None,
        "machine_busy_cores": round(busy / elapsed, 3),
        "generator_cores": round(generator_seconds / elapsed, 3),
        "generator_share": round(generator_seconds / busy, 3) if busy else None,
        "system_cores": round(system / elapsed, 3),
        "cpu_ms_per_msg": per_message(system) if per_message else None,
        # What the kernel charged to no process we track: other programs, interrupts, and
        # the sampling error of per-process accounting.
        "unattributed_cores": round((system - accounted) / elapsed, 3),
        "processes": {
            name: {
                "cores": round(seconds / elapsed, 3),
                "cpu_ms_per_msg": per_message(seconds) if per_message else None,
            }
            for name, seconds in sorted(per_process.items(), key=lambda kv: -kv[1])
        },
    }
