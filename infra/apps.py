"""The project's own services, started by ``./dev up`` after the infrastructure.

Unlike the infrastructure, they are restarted on every ``up`` (a second or two each), so what
runs is always the code in the working tree.
"""

from __future__ import annotations

import functools
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

from infra import processes
from infra.catalog import APPS, PARTITIONS, App
from infra.console import detail, say, step
from infra.errors import StepFailed
from infra.services import Context

GRPC_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"
READY_TIMEOUT = 60.0
STOP_GRACE = 15.0


def default_partitioning() -> str:
    """The partitioning section ``./dev up`` seeds: two servers, half the partitions each."""
    half = PARTITIONS // 2
    return json.dumps(
        {
            "partitions": PARTITIONS,
            "servers": [
                {"name": "m1", "address": "grpc://127.0.0.1:7101", "ranges": [[0, half - 1]]},
                {
                    "name": "m2",
                    "address": "grpc://127.0.0.1:7102",
                    "ranges": [[half, PARTITIONS - 1]],
                },
            ],
        }
    )


def secret(ctx: Context, name: str) -> str:
    """A random secret kept in .infra/secrets/<name>, made on first use."""
    path = ctx.layout.state / "secrets" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def environment(ctx: Context) -> dict[str, str]:
    """What every service process gets: the shared secrets and the local endpoints."""
    return {
        "CHAT_JWT_SECRET": secret(ctx, "jwt"),
        "CHAT_ADMIN_TOKENS": f"admin={secret(ctx, 'admin')}",
        "CHAT_PARTITIONS": str(PARTITIONS),
        "CHAT_PARTITIONING_DEFAULT": default_partitioning(),
        "PYTHONUNBUFFERED": "1",
        # gRPC's EventEngine listener hands every read and write between its own threads; the
        # older I/O path costs 8 thread switches per unary call here instead of 15 and about
        # 14% less CPU (measured on a 2-core box, grpcio 1.85; see docs/benchmarks.md).
        "GRPC_EXPERIMENTS": GRPC_EXPERIMENTS,
        # A crash in a C extension (librdkafka, the Cassandra driver) leaves a traceback.
        "PYTHONFAULTHANDLER": "1",
    }


def setup(ctx: Context) -> None:
    """Schema migrations, topics and the default config sections (each idempotent)."""
    env = environment(ctx)
    for title, module in (
        ("cassandra schema migrations", ["history", "migrate"]),
        ("kafka topics", ["messaging", "setup"]),
        ("live config defaults", ["config_service", "seed"]),
    ):
        with step(title):
            result = subprocess.run(
                [sys.executable, "-m", *module],
                env={**ctx.env, **env},
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            for line in result.stdout.strip().splitlines():
                detail(line)
            if result.returncode != 0:
                raise StepFailed(
                    f"{title} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
                )


def start(ctx: Context, only: set[str] | None = None) -> list[tuple[App, int]]:
    """(Re)start every service, or the named ones, and wait until each reports ready."""
    env = environment(ctx)
    started = []
    for app in APPS:
        if only is not None and app.name not in only:
            continue
        with step(f"{app.name}: start"):
            pidfile = ctx.layout.pidfile(app.name)
            processes.stop(pidfile, grace=STOP_GRACE)
            ctx.layout.home(app.name).mkdir(parents=True, exist_ok=True)
            processes.check_ports_free(app.name, {"ops": app.ops_port}, wait=10.0)
            pid = processes.spawn(
                [sys.executable, "-m", *app.module],
                pidfile=pidfile,
                log=ctx.layout.log(app.name),
                env={**env, **app.env, "CHAT_OPS_PORT": str(app.ops_port)},
            )
            detail(f"pid {pid}, log {ctx.layout.log(app.name)}")
            processes.wait_ready(
                app.name,
                pid,
                functools.partial(_ready, app.ops_port),
                log=ctx.layout.log(app.name),
                timeout=READY_TIMEOUT,
                pidfile=pidfile,
            )
            started.append((app, pid))
    return started


def missing(ctx: Context) -> set[str]:
    """The services that are not running (their pid file names no live process)."""
    return {app.name for app in APPS if processes.alive(ctx.layout.pidfile(app.name)) is None}


def stop(ctx: Context) -> None:
    for app in reversed(APPS):
        began = time.monotonic()
        stopped = processes.stop(ctx.layout.pidfile(app.name), grace=STOP_GRACE)
        if stopped is not None:
            say(f"{app.name}: stopped pid {stopped.pid} in {time.monotonic() - began:.1f}s")


def status(ctx: Context) -> bool:
    healthy = True
    for app in APPS:
        tracked = processes.alive(ctx.layout.pidfile(app.name))
        if tracked is None:
            say(f"{app.name:<15} stopped")
            healthy = False
            continue
        ready = _ready(app.ops_port)
        healthy = healthy and ready
        rss = (processes.resident_kib(tracked.pid) or 0) / 1024
        state = "ready" if ready else "NOT READY"
        say(f"{app.name:<15} {state:<10} pid {tracked.pid:<8} rss {rss:5.0f} MiB   {app.endpoint}")
    return healthy


def summary(started: list[tuple[App, int]]) -> None:
    say("")
    say("Services are up:")
    for app, pid in started:
        say(
            f"  {app.name:<15} pid {pid:<8} {app.endpoint}; ops http://127.0.0.1:{app.ops_port}/readyz"
        )
    say("Chat from a terminal: .venv/bin/python -m messaging.client --help")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
