"""The ``up``, ``down``, ``status`` and ``reset`` operations over all infrastructure services."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from infra import processes
from infra.console import detail, say, step
from infra.errors import InfraError
from infra.services import Context, Service, all_services

# Once alive, a process that was already running gets this long to answer its probe.
ALREADY_RUNNING_TIMEOUT = 30.0


@dataclass(frozen=True)
class Outcome:
    service: Service
    pid: int
    started_here: bool


def up(ctx: Context, services: list[Service]) -> list[Outcome]:
    """Install what is missing, start what is not running, and wait until each one answers.
    Services of one group are all started before any is waited for."""
    outcomes = []
    pending: list[tuple[Service, int | None]] = []
    for index, service in enumerate(services):
        with step(f"{service.name}: install"):
            service.install(ctx)
        with step(f"{service.name}: start"):
            pending.append((service, _spawn(ctx, service)))
        following = services[index + 1] if index + 1 < len(services) else None
        if service.group is not None and following is not None and following.group == service.group:
            continue  # its group is started whole before anyone waits
        for started, pid in pending:
            with step(f"{started.name}: ready"):
                outcomes.append(_ready(ctx, started, pid))
        pending = []
    return outcomes


def _spawn(ctx: Context, service: Service) -> int | None:
    """Start the service unless it runs; its pid if started here, else None."""
    layout = ctx.layout
    pidfile = layout.pidfile(service.name)
    running = processes.alive(pidfile)
    if running is not None:
        detail(f"already running (pid {running.pid})")
        return None
    processes.check_ports_free(service.name, service.ports, service.host)
    service.prepare(ctx)
    pid = processes.spawn(
        service.command(ctx),
        pidfile=pidfile,
        log=layout.log(service.name),
        env=service.environment(ctx),
    )
    detail(f"started pid {pid}, log {layout.log(service.name)}")
    return pid


def _ready(ctx: Context, service: Service, pid: int | None) -> Outcome:
    """Wait until the service answers a real client."""
    layout = ctx.layout
    pidfile = layout.pidfile(service.name)
    log = layout.log(service.name)
    if pid is None:
        running = processes.alive(pidfile)
        if running is None:
            raise InfraError(f"{service.name} stopped while others were started")
        processes.wait_ready(
            service.name, None, service.probe, log=log, timeout=ALREADY_RUNNING_TIMEOUT
        )
        detail("ready")
        return Outcome(service, running.pid, started_here=False)
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


def down(
    ctx: Context, services: list[Service] | None = None, *, only_running: bool = False
) -> None:
    """Stop, in reverse start order, the processes infra started (found by pid file): the
    named services, or every one of either stack. ``only_running`` says nothing of those
    that were not running."""
    for service in reversed(all_services(ctx.layout) if services is None else services):
        started = time.monotonic()
        stopped = processes.stop(ctx.layout.pidfile(service.name), grace=service.stop_grace)
        if stopped is None:
            if not only_running:
                say(f"{service.name}: not running")
        else:
            elapsed = time.monotonic() - started
            say(f"{service.name}: stopped pid {stopped.pid} in {elapsed:.1f}s")


def reset(ctx: Context) -> None:
    """Stop everything and wipe data and logs; downloads and builds are kept."""
    down(ctx)
    for service in all_services(ctx.layout):
        service.wipe(ctx)
        say(f"{service.name}: data and logs removed")


def status(ctx: Context, services: list[Service]) -> bool:
    """Print a line per service (per node of the cluster); True when every one runs and
    answers."""
    healthy = True
    for service in services:
        tracked = processes.alive(ctx.layout.pidfile(service.name))
        if tracked is None:
            healthy = False
            say(f"{service.name:<12} stopped")
            continue
        rss = processes.resident_kib(tracked.pid) or 0
        answers = service.probe()
        healthy = healthy and answers
        state = (service.role() or "ready") if answers else "NOT ANSWERING"
        say(
            f"{service.name:<12} {state:<14} pid {tracked.pid:<8} rss {rss / 1024:7.0f} MiB   "
            + ", ".join(service.endpoints())
        )
    return healthy


def summary(outcomes: list[Outcome]) -> None:
    say("")
    say("Infrastructure is up:")
    for outcome in outcomes:
        rss = processes.resident_kib(outcome.pid) or 0
        say(
            f"  {outcome.service.name:<12} pid {outcome.pid:<8} rss {rss / 1024:6.0f} MiB   "
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
