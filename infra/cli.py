"""``./dev``: bring the local stack up and down, look at it, and run the whole test suite."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from infra import apps, catalog, install, modes, processes, stack, tls, tools
from infra.console import say, seconds, step
from infra.errors import InfraError
from infra.layout import Layout
from infra.modes import CLUSTER, SINGLE, Mode
from infra.services import Context, Service, all_services, services_of
from infra.services.cassandra import CassandraNode

NO_TESTS_COLLECTED = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_command = commands.add_parser(
        "up", help="install what is missing, start everything, print addresses"
    )
    up_command.add_argument(
        "--cluster",
        action="store_true",
        help="the cluster instead of the single-node stack: three Kafka brokers, three"
        " Cassandra nodes, Redis with two replicas and three sentinels, credentials for all",
    )
    up_command.add_argument(
        "--missing",
        action="store_true",
        help="start only services that are not running, even those whose code changed",
    )
    restart = commands.add_parser(
        "restart", help="restart the named services (infrastructure or ours), nothing else"
    )
    restart.add_argument("services", nargs="*")
    restart.add_argument(
        "--rolling",
        action="store_true",
        help="restart every one of our services, one at a time, each stopped gracefully"
        " (SIGTERM) and ready again before the next",
    )
    commands.add_parser("down", help="stop the processes ./dev started (data is kept)")
    commands.add_parser("status", help="what runs, its pid, memory and whether it answers")
    commands.add_parser("reset", help="stop everything and wipe data and logs (keeps downloads)")
    commands.add_parser(
        "repair", help="repair the cluster's Cassandra data on every node (nodetool repair)"
    )
    logs = commands.add_parser("logs", help="show (or follow) service logs")
    logs.add_argument("services", nargs="*", help="default: all")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    admin = commands.add_parser(
        "admin",
        help="chat-admin (get, set, history, seed) against the stack that runs, single or cluster,"
        " with the operator's credentials",
    )
    admin.add_argument("admin_args", nargs=argparse.REMAINDER, help="e.g. get limits")
    commands.add_parser("check", help="formatting, lint, strict types, generated protos current")
    commands.add_parser("protos", help="regenerate protos/chat/v1 from the .proto files")
    test = commands.add_parser(
        "test", help="start what is not running, then run checks and every test"
    )
    which = test.add_mutually_exclusive_group()
    which.add_argument(
        "--single", action="store_true", help="only the single-node suite (unit, integration, e2e)"
    )
    which.add_argument(
        "--cluster", action="store_true", help="only the cluster's fault suite (tests/cluster)"
    )
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ctx = Context(layout=Layout.from_env())
    try:
        return _dispatch(ctx, args)
    except InfraError as exc:
        say(f"\nerror: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130


def _dispatch(ctx: Context, args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "up":
        started = time.monotonic()
        up(ctx, CLUSTER if args.cluster else SINGLE, missing_only=args.missing)
        say(f"All up in {seconds(time.monotonic() - started)}.")
        return 0
    if command == "restart":
        if args.rolling == bool(args.services):
            say("name the services to restart, or give --rolling (every one of ours)")
            return 2
        if args.rolling:
            return rolling_restart(ctx)
        return restart(ctx, args.services)
    if command == "down":
        apps.stop(ctx)
        stack.down(ctx)
        return 0
    if command == "status":
        mode = modes.current(ctx.layout)
        say(f"Stack: {mode} (./dev up{' --cluster' if mode == CLUSTER else ''})")
        infra_ok = stack.status(ctx, infrastructure(ctx))
        return 0 if apps.status(ctx) and infra_ok else 1
    if command == "reset":
        apps.stop(ctx)
        stack.reset(ctx)
        return 0
    if command == "logs":
        names: list[str] = args.services or known_services(ctx)
        _check_names(ctx, names)
        return stack.follow_logs(ctx, names, args.lines, args.follow)
    if command == "admin":
        return apps.admin(ctx, args.admin_args)
    if command == "check":
        return check(ctx)
    if command == "protos":
        with step("go protoc plugins"):
            tools.protoc_plugins(ctx.layout)
        return subprocess.call([sys.executable, "-m", "protos.generate"], cwd=ctx.layout.project)
    if command == "repair":
        return repair(ctx)
    if command == "test":
        suites = [SINGLE] if args.single else [CLUSTER] if args.cluster else [SINGLE, CLUSTER]
        return test(ctx, suites, args.pytest_args)
    raise AssertionError(command)


def check(ctx: Context) -> int:
    root = ctx.layout.project
    python = sys.executable
    with step("go protoc plugins"):
        tools.protoc_plugins(ctx.layout)
    for title, cmd in (
        ("ruff format --check", [python, "-m", "ruff", "format", "--check", "."]),
        ("ruff check", [python, "-m", "ruff", "check", "."]),
        ("mypy --strict", [python, "-m", "mypy"]),
        ("generated protos are current", [python, "-m", "protos.generate", "--check"]),
    ):
        with step(title):
            code = subprocess.call(cmd, cwd=root)
        if code != 0:
            say(f"{title} failed (exit {code})")
            return code
    return 0


def infrastructure(ctx: Context) -> list[Service]:
    """The infrastructure of the stack that runs (or ran last)."""
    return services_of(modes.current(ctx.layout), ctx.layout)


def up(ctx: Context, mode: Mode, *, missing_only: bool = False) -> list[stack.Outcome]:
    """Infrastructure of the chosen stack (reused when running; the other stack's is stopped),
    then schema, roles and topics, then every service that is not running or whose code or
    settings changed (with ``missing_only``, only the former)."""
    chosen = services_of(mode, ctx.layout)
    keep = {service.name for service in chosen}
    other = [service for service in all_services(ctx.layout) if service.name not in keep]
    stack.down(ctx, other, only_running=True)
    if modes.current(ctx.layout) != mode:
        # What it scrapes is the stack's own services: it starts again with the new list.
        stack.down(ctx, [s for s in chosen if s.name == "prometheus"], only_running=True)
    modes.record(ctx.layout, mode)
    if mode == CLUSTER:
        with step("TLS: the cluster's CA and certificate (.infra/secrets/tls)"):
            tls.ensure(ctx.layout)
    balancer = [s for s in chosen if s.name == "balancer"]
    if balancer and processes.alive(ctx.layout.pidfile("balancer")) is None:
        # It takes the ports the single stack's BFF and config service listen on; they come
        # back behind it below.
        apps.stop(ctx, set(catalog.BEHIND_THE_BALANCER))
    outcomes = stack.up(ctx, chosen)
    stack.summary(outcomes)
    with step("benchmark tools (bench/loadgen)"):
        tools.bench_binaries(ctx.layout)
    with step("Chromium for the web client's tests"):
        install.chromium(ctx.layout)
    apps.setup(ctx)
    apps.summary(apps.up(ctx, missing_only=missing_only))
    return outcomes


def known_services(ctx: Context) -> list[str]:
    """Every service of the stack ./dev runs: the infrastructure in start order, then ours."""
    return [service.name for service in infrastructure(ctx)] + [
        app.name for app in catalog.apps_of(modes.current(ctx.layout))
    ]


def _check_names(ctx: Context, names: list[str]) -> None:
    known = known_services(ctx)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InfraError(f"unknown service {', '.join(unknown)}; known: {', '.join(known)}")


def restart(ctx: Context, names: list[str]) -> int:
    """Stop and start exactly the named services; everything else keeps running."""
    _check_names(ctx, names)
    infra = {service.name: service for service in infrastructure(ctx)}
    ours = {app.name for app in catalog.apps_of(modes.current(ctx.layout))}
    chosen = [infra[name] for name in names if name in infra]
    if chosen:
        stack.down(ctx, chosen)
        stack.summary(stack.up(ctx, chosen))
    if ours & set(names):
        apps.setup(ctx)  # idempotent: a service of newer code may need a new section or table
        apps.summary([(app, pid, "restarted") for app, pid in apps.start(ctx, ours & set(names))])
    return 0


def rolling_restart(ctx: Context) -> int:
    """Every one of our services in turn: SIGTERM (a messaging server gives its partitions to
    the others, the BFF ends its streams with a resume hint, consumers commit), start, ready.
    What users see meanwhile is measured by tests/cluster/test_service_faults.py."""
    apps.setup(ctx)  # idempotent: newer code may need a new section or table
    started = time.monotonic()
    apps.summary([(app, pid, "restarted") for app, pid in apps.start(ctx)])
    say(f"Rolling restart done in {seconds(time.monotonic() - started)}.")
    return 0


def repair(ctx: Context) -> int:
    """Anti-entropy repair of the cluster's keyspaces, each node's primary ranges in turn (so
    every range is repaired once). Hinted handoff covers a node that was down for less than
    ``max_hint_window``; repair covers the rest, and a node replaced or down for longer."""
    if modes.current(ctx.layout) != CLUSTER:
        raise InfraError(
            "repair is for the cluster (./dev up --cluster); a single node has no replicas"
        )
    for node in infrastructure(ctx):
        if isinstance(node, CassandraNode):
            with step(f"{node.name}: nodetool repair -pr"):
                code = subprocess.call(node.nodetool(ctx, "repair", "-pr"))
            if code != 0:
                say(f"{node.name}: repair failed (exit {code})")
                return code
    return 0


#: What each suite runs: pytest's marker expression, and the folders it collects.
SUITES: dict[Mode, list[str]] = {
    SINGLE: ["-m", "not cluster"],
    CLUSTER: ["-m", "cluster", "tests/cluster"],
}


def test(ctx: Context, suites: list[Mode], pytest_args: list[str]) -> int:
    """The whole suite against real services: for each stack in turn (the single node, then
    the cluster), start what is missing, check, then pytest."""
    started: list[Service] = []
    try:
        for mode in suites:
            outcomes = up(ctx, mode)
            started += [outcome.service for outcome in outcomes if outcome.started_here]
            if mode == suites[0]:
                code = check(ctx)
                if code != 0:
                    return code
            with step(f"pytest: the {mode} suite"):
                code = subprocess.call(
                    [sys.executable, "-m", "pytest", *SUITES[mode], *pytest_args],
                    cwd=ctx.layout.project,
                )
            if code == NO_TESTS_COLLECTED:
                say(f"pytest collected no tests of the {mode} suite: that is a failure")
                return 1
            if code != 0:
                return code
        return 0
    finally:
        if os.environ.get("CI") == "true":
            # A CI machine should not keep JVMs running after the job; a developer's should.
            apps.stop(ctx)
            stack.down(ctx, started, only_running=True)
