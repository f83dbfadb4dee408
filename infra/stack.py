"""The ``up``, ``down``, ``status`` and ``reset`` operations over all infrastructure services."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

from infra import processes
from infra.console import detail, say, step
from infra.services import Context, Service, all_services

# Once alive, a process that was already running gets this long to answer its probe.
ALREADY_RUNNING_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    service: Service
    pid: int
    started_here: bool


def up(ctx: Context, services: list[Service] | None = None) -> list[Outcome]:
    """Install what is missing, start what is not running, and wait until each one answers."""
    outcomes = []
    for service in all_services() if services is None else services:
        with step(f"{service.name}: install"):
            service.install(ctx)
        with step(f"{service.name}: start"):
            outcomes.append(_start(ctx, service))
    return outcomes


def _start(ctx: Context, service: Service) -> Outcome:
    layout = ctx.layout
    pidfile = layout.pidfile(service.name)
    log = layout.log(service.name)
    running = processes.alive(pidfile)
    if running is not None:
        detail(f"already running (pid {running.pid}); checking it answers")
        processes.wait_ready(
            service.name, None, service.probe, log=log, timeout=ALREADY_RUNNING_TIMEOUT
        )
        detail("ready")
        return Outcome(service, running.pid, started_here=False)
    processes.check_ports_free(service.name, service.ports)
    service.prepare(ctx)
    pid = processes.spawn(
        service.command(ctx), pidfile=pidfile, log=log, env=service.environment(ctx)
    )
    detail(f"started pid {pid}, log {log}; waiting for a real client to get an answer")
    try:
        processes.wait_ready(
            service.name,
            pid,
            service.probe,
            log=log,
            timeout=service.ready_timeout,
            pidfile=pidfile,
        )
    except BaseException:
        # Never leave a half-started process behind holding the ports.
        processes.stop(pidfile, grace=service.stop_grace)
        raise
    detail("ready")
    return Outcome(service, pid, started_here=True)


def down(ctx: Context, services: list[Service] | None = None) -> None:
    """Stop, in reverse start order, the processes infra started (found by pid file)."""
    for service in reversed(all_services() if services is None else services):
        started = time.monotonic()
        stopped = processes.stop(ctx.layout.pidfile(service.name), grace=service.stop_grace)
        if stopped is None:
            say(f"{service.name}: not running")
        else:
            elapsed = time.monotonic() - started
            say(f"{service.name}: stopped pid {stopped.pid} in {elapsed:.1f}s")


def reset(ctx: Context) -> None:
    """Stop everything and wipe data and logs; downloads and builds are kept."""
    down(ctx)
    for service in all_services():
        home = ctx.layout.home(service.name)
        for path in (ctx.layout.data(service.name), ctx.layout.logs(service.name)):
            shutil.rmtree(path, ignore_errors=True)
        (home / "cluster-id").unlink(missing_ok=True)
        say(f"{service.name}: data and logs removed")


def status(ctx: Context) -> bool:
    """Print a line per service; True when every one runs and answers."""
    healthy = True
    for service in all_services():
        tracked = processes.alive(ctx.layout.pidfile(service.name))
        if tracked is None:
            healthy = False
            say(f"{service.name:<10} stopped")
            continue
        rss = processes.resident_kib(tracked.pid) or 0
        answers = service.probe()
        healthy = healthy and answers
        state = "ready" if answers else "NOT ANSWERING"
        say(
            f"{service.name:<10} {state:<14} pid {tracked.pid:<8} rss {rss / 1024:7.0f} MiB   "
            + ", ".join(service.endpoints())
        )
    return healthy


def summary(outcomes: list[Outcome]) -> None:
    say("")
    say("Infrastructure is up:")
    for outcome in outcomes:
        rss = processes.resident_kib(outcome.pid) or 0
        say(
            f"  {outcome.service.name:<10} pid {outcome.pid:<8} rss {rss / 1024:6.0f} MiB   "
            + ", ".join(outcome.service.endpoints())
        )
    say("Stop with ./dev down (data is kept); ./dev reset also wipes the data.")


def follow_logs(ctx: Context, names: list[str], lines: int, follow: bool) -> int:
    paths = [str(ctx.layout.log(name)) for name in names]
    command = ["tail", f"-n{lines}", *(["-F"] if follow else []), *paths]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
