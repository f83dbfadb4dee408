"""The project's own services, started by ``./dev up`` after the infrastructure.

``./dev up`` starts a service that is not running, restarts one whose code or settings changed
since it started (its *fingerprint*: a hash of the project's Python packages and the web
client's files, the dependency pins, its command and its environment), and leaves a running,
unchanged one alone: bringing back what died never drops anyone's live stream.
``./dev restart NAME`` restarts on purpose.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra import access, catalog, cluster, modes, processes, secret_files, tls
from infra.catalog import PARTITIONS, App
from infra.console import detail, say, step
from infra.errors import StepFailed
from infra.services import Context, balancer, seaweedfs

GRPC_EXPERIMENTS = "-event_engine_listener,-event_engine_for_all_other_endpoints"
READY_TIMEOUT = 60.0
STOP_GRACE = 15.0
#: A running, unchanged service gets this long to report ready before it is restarted.
ALREADY_RUNNING_TIMEOUT = 20.0


def default_partitioning(mode: modes.Mode = modes.SINGLE) -> str:
    """The partitioning section ``./dev up`` seeds: the partitions split evenly over the
    stack's messaging servers (two, or three in the cluster)."""
    servers = catalog.messaging_servers(mode)
    share, rest = divmod(PARTITIONS, len(servers))
    entries, first = [], 0
    for index, app in enumerate(servers):
        count = share + (1 if index < rest else 0)
        entries.append(
            {
                "name": app.env["CHAT_SERVER_NAME"],
                "address": f"grpc://127.0.0.1:{app.env['CHAT_MESSAGING_PORT']}",
                "ranges": [[first, first + count - 1]],
            }
        )
        first += count
    return json.dumps({"partitions": PARTITIONS, "servers": entries})


def secret(ctx: Context, name: str) -> str:
    """A random secret kept in .infra/secrets/<name>, made on first use."""
    return secret_files.secret(ctx.layout, name)


def environment(ctx: Context, user: str) -> dict[str, str]:
    """What a service process logging in as ``user`` gets: the shared secrets, and in the
    cluster where its parts are and its credentials (the single-node stack's defaults are the
    settings' own)."""
    found = {
        "CHAT_JWT_SECRET": secret(ctx, "jwt"),
        "CHAT_ADMIN_TOKENS": f"admin={secret(ctx, 'admin')}",
        # The object store's key for attachments (infra/services/seaweedfs.py).
        "CHAT_S3_ENDPOINT": f"http://127.0.0.1:{seaweedfs.S3_PORT}",
        "CHAT_S3_ACCESS_KEY": seaweedfs.ACCESS_KEY,
        "CHAT_S3_SECRET_KEY_FILE": str(seaweedfs.secret_key_file(ctx.layout)),
        "CHAT_PARTITIONS": str(PARTITIONS),
        "CHAT_PARTITIONING_DEFAULT": default_partitioning(modes.current(ctx.layout)),
        "PYTHONUNBUFFERED": "1",
        # gRPC's EventEngine listener hands every read and write between its own threads; the
        # older I/O path costs 8 thread switches per unary call here instead of 15 and about
        # 14% less CPU (measured on a 2-core box, grpcio 1.85; see docs/benchmarks.md).
        "GRPC_EXPERIMENTS": GRPC_EXPERIMENTS,
        # A crash in a C extension (librdkafka, the Cassandra driver) leaves a traceback.
        "PYTHONFAULTHANDLER": "1",
    }
    if modes.current(ctx.layout) == modes.CLUSTER:
        keys = cluster.Secrets.of(ctx.layout)
        for name in cluster.service_secrets(user):
            keys.file(name)  # made on first use
        found |= cluster.service_environment(cluster.LOOPBACK, keys, user)
        found |= tls_environment(ctx)
        found["CHAT_HISTORY_ADDRESS"] = catalog.CLUSTER_HISTORY_ADDRESS
    return found


def tls_environment(ctx: Context) -> dict[str, str]:
    """The cluster's gRPC servers present its certificate, and its callers verify it."""
    files = tls.Files.of(ctx.layout)
    return {
        "CHAT_TLS_CA": str(files.ca),
        "CHAT_TLS_CERT": str(files.cert),
        "CHAT_TLS_KEY": str(files.key),
    }


def setup(ctx: Context) -> None:
    """Schema migrations, topics and the default config sections (each idempotent), as the
    operator; in the cluster also the roles and grants of each service."""
    env = environment(ctx, cluster.ADMIN)
    if modes.current(ctx.layout) == modes.CLUSTER:
        with step("cluster logins: Cassandra roles"):
            access.cassandra_roles(cluster.LOOPBACK, cluster.Secrets.of(ctx.layout))
    for title, module in (
        ("cassandra schema migrations: history's tables", ["history", "migrate"]),
        ("cassandra schema migrations: messaging's tables", ["messaging", "migrate"]),
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
    if modes.current(ctx.layout) == modes.CLUSTER:
        with step("cluster rights: Cassandra grants, Kafka ACLs"):
            access.grants(cluster.LOOPBACK, cluster.Secrets.of(ctx.layout))


def admin(ctx: Context, args: list[str]) -> int:
    """``chat-admin`` with ``args``, as the operator: in the cluster its Redis sits behind
    Sentinel and wants a login, which the bare command would not know."""
    if not args or args[0] == "serve":
        say("give a chat-admin command: get, set, history or seed (the service runs apart)")
        return 2
    return subprocess.call(
        [sys.executable, "-m", "config_service", *args],
        env={**ctx.env, **environment(ctx, cluster.ADMIN)},
        cwd=ctx.layout.project,
    )


#: What a service runs besides its own command and environment: a change here restarts it.
CODE = (
    "chatlib",
    "messaging",
    "history",
    "notifier",
    "bff",
    "config_service",
    "clients",
    "protos",
)
PINS = ("pyproject.toml", "constraints.txt")


#: A setting's name in the services' code.
SETTING = re.compile(rb"\"(CHAT_[A-Z0-9_]+)\"")


@dataclass(frozen=True)
class Code:
    """What the services run: a hash of their files, and the settings they read by name."""

    digest: str
    settings: frozenset[str]


def read_code(ctx: Context) -> Code:
    """Every file the services run (sources, the web client, dependency pins)."""
    digest = hashlib.sha256()
    root = ctx.layout.project
    files = [root / name for name in PINS]
    for package in CODE:
        files += sorted(
            path
            for path in (root / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        )
    settings: set[str] = set()
    for path in files:
        content = path.read_bytes() if path.is_file() else b""
        digest.update(str(path.relative_to(root)).encode() + b"\0" + content + b"\0")
        if path.suffix == ".py":
            settings.update(name.decode() for name in SETTING.findall(content))
    return Code(digest.hexdigest(), frozenset(settings))


def _command(app: App) -> list[str]:
    return [sys.executable, "-m", *app.module]


def _environment(env: dict[str, str], app: App) -> dict[str, str]:
    return {**env, **app.env, "CHAT_OPS_PORT": str(app.ops_port)}


#: The libraries' own settings a service inherits from the caller's environment.
LIBRARY_PREFIXES = ("GRPC_", "OTEL_")


def fingerprint(app: App, env: dict[str, str], code: Code) -> str:
    """What a running service was started from: its code, command and settings. A service
    inherits the caller's environment; of it, what the services' code names (``CHAT_...``) and
    the libraries' settings count, and nothing else (a shell's PWD, a benchmark's own
    ``CHAT_BENCH_RESULTS``)."""
    inherited = {
        k: v for k, v in os.environ.items() if k in code.settings or k.startswith(LIBRARY_PREFIXES)
    }
    settings = {**inherited, **_environment(env, app)}
    described = json.dumps([code.digest, _command(app), settings], sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def _fingerprint_file(ctx: Context, app: App) -> Path:
    return ctx.layout.home(app.name) / "fingerprint"


def start(ctx: Context, only: set[str] | None = None) -> list[tuple[App, int]]:
    """(Re)start every service, or the named ones, and wait until each reports ready."""
    code = read_code(ctx)
    started = []
    for app in catalog.apps_of(modes.current(ctx.layout)):
        if only is not None and app.name not in only:
            continue
        with step(f"{app.name}: start"):
            started.append((app, _restart(ctx, app, environment(ctx, app.user), code)))
    return started


def run(ctx: Context, app: App) -> int:
    """(Re)start one service as described by ``app`` (which may differ from the catalog's, for
    a measurement); a later ``up`` restarts it as the catalog says."""
    return _restart(ctx, app, environment(ctx, app.user), read_code(ctx))


def up(ctx: Context, *, missing_only: bool = False) -> list[tuple[App, int, str]]:
    """Start each service that is not running and restart each one whose fingerprint changed
    (with ``missing_only``, only the first); leave the rest running. Returns (service, pid,
    what was done) for each."""
    code = read_code(ctx)
    outcomes = []
    chosen = catalog.apps_of(modes.current(ctx.layout))
    names = {app.name for app in chosen}
    for app in catalog.every_app():
        if app.name not in names:  # the other stack's only (the cluster's doubles)
            stopped = processes.stop(ctx.layout.pidfile(app.name), grace=STOP_GRACE)
            if stopped is not None:
                say(f"{app.name}: stopped pid {stopped.pid} (not part of this stack)")
    for app in chosen:
        env = environment(ctx, app.user)
        with step(f"{app.name}: up"):
            running = processes.alive(ctx.layout.pidfile(app.name))
            path = _fingerprint_file(ctx, app)
            recorded = path.read_text().strip() if path.is_file() else ""
            changed = recorded != fingerprint(app, env, code)
            if running is not None and (missing_only or not changed):
                if _ready_within(app, ALREADY_RUNNING_TIMEOUT):
                    detail(f"running and unchanged (pid {running.pid}): left alone")
                    outcomes.append((app, running.pid, "unchanged"))
                    continue
                detail(f"pid {running.pid} is not ready: restarting it")
            elif running is not None:
                detail(f"its code or settings changed since pid {running.pid} started")
            pid = _restart(ctx, app, env, code)
            outcomes.append((app, pid, "started" if running is None else "restarted"))
    return outcomes


def _restart(ctx: Context, app: App, env: dict[str, str], code: Code) -> int:
    pidfile = ctx.layout.pidfile(app.name)
    processes.stop(pidfile, grace=STOP_GRACE)
    ctx.layout.home(app.name).mkdir(parents=True, exist_ok=True)
    processes.check_ports_free(app.name, {"ops": app.ops_port}, wait=10.0)
    pid = processes.spawn(
        _command(app), pidfile=pidfile, log=ctx.layout.log(app.name), env=_environment(env, app)
    )
    _fingerprint_file(ctx, app).write_text(fingerprint(app, env, code) + "\n")
    detail(f"pid {pid}, log {ctx.layout.log(app.name)}")
    processes.wait_ready(
        app.name,
        pid,
        functools.partial(_ready, app.ops_port),
        log=ctx.layout.log(app.name),
        timeout=READY_TIMEOUT,
        pidfile=pidfile,
    )
    if app.module[0] in ("bff", "config_service"):
        # Ready is not yet serving: the balancer sends it requests once its own check passed.
        # A rolling restart that stopped the next one before then would leave it none.
        processes.wait_ready(
            f"{app.name} in the balancer",
            None,
            lambda: balancer.serving(app.name) is not False,
            log=ctx.layout.log("balancer"),
            timeout=30.0,
        )
    return pid


def _ready_within(app: App, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if _ready(app.ops_port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def stop(ctx: Context, only: set[str] | None = None) -> None:
    """Stop every service of either stack, or the named ones."""
    for app in reversed(catalog.every_app()):
        if only is not None and app.name not in only:
            continue
        began = time.monotonic()
        stopped = processes.stop(ctx.layout.pidfile(app.name), grace=STOP_GRACE)
        if stopped is not None:
            say(f"{app.name}: stopped pid {stopped.pid} in {time.monotonic() - began:.1f}s")


def status(ctx: Context) -> bool:
    healthy = True
    for app in catalog.apps_of(modes.current(ctx.layout)):
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


def summary(outcomes: list[tuple[App, int, str]]) -> None:
    say("")
    say("Services are up:")
    for app, pid, done in outcomes:
        say(
            f"  {app.name:<15} pid {pid:<8} {done:<9} {app.endpoint};"
            f" ops http://127.0.0.1:{app.ops_port}/readyz"
        )
    say("Chat from a terminal: .venv/bin/chat-client --help")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
