"""``./dev``: bring the local stack up and down, look at it, and run the whole test suite."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from infra import apps, catalog, install, stack, tools
from infra.console import say, seconds, step
from infra.errors import InfraError
from infra.layout import Layout
from infra.services import Context, all_services

NO_TESTS_COLLECTED = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_command = commands.add_parser(
        "up", help="install what is missing, start everything, print addresses"
    )
    up_command.add_argument(
        "--missing",
        action="store_true",
        help="start only services that are not running, even those whose code changed",
    )
    restart = commands.add_parser(
        "restart", help="restart the named services (infrastructure or ours), nothing else"
    )
    restart.add_argument("services", nargs="+")
    commands.add_parser("down", help="stop the processes ./dev started (data is kept)")
    commands.add_parser("status", help="what runs, its pid, memory and whether it answers")
    commands.add_parser("reset", help="stop everything and wipe data and logs (keeps downloads)")
    logs = commands.add_parser("logs", help="show (or follow) service logs")
    logs.add_argument("services", nargs="*", help="default: all")
    logs.add_argument("-n", "--lines", type=int, default=50)
    logs.add_argument("-f", "--follow", action="store_true")
    commands.add_parser("check", help="formatting, lint, strict types, generated protos current")
    commands.add_parser("protos", help="regenerate protos/chat/v1 from the .proto files")
    test = commands.add_parser(
        "test", help="start what is not running, then run checks and every test"
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
        up(ctx, missing_only=args.missing)
        say(f"All up in {seconds(time.monotonic() - started)}.")
        return 0
    if command == "restart":
        return restart(ctx, args.services)
    if command == "down":
        apps.stop(ctx)
        stack.down(ctx)
        return 0
    if command == "status":
        infra_ok = stack.status(ctx)
        return 0 if apps.status(ctx) and infra_ok else 1
    if command == "reset":
        apps.stop(ctx)
        stack.reset(ctx)
        return 0
    if command == "logs":
        names: list[str] = args.services or known_services()
        _check_names(names)
        return stack.follow_logs(ctx, names, args.lines, args.follow)
    if command == "check":
        return check(ctx)
    if command == "protos":
        with step("go protoc plugins"):
            tools.protoc_plugins(ctx.layout)
        return subprocess.call([sys.executable, "-m", "protos.generate"], cwd=ctx.layout.project)
    if command == "test":
        return test(ctx, args.pytest_args)
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


def up(ctx: Context, *, missing_only: bool = False) -> list[stack.Outcome]:
    """Infrastructure (reused when running), then schema and topics, then every service that is
    not running or whose code or settings changed (with ``missing_only``, only the former)."""
    outcomes = stack.up(ctx)
    stack.summary(outcomes)
    with step("benchmark tools (bench/loadgen)"):
        tools.bench_binaries(ctx.layout)
    with step("Chromium for the web client's tests"):
        install.chromium(ctx.layout)
    apps.setup(ctx)
    apps.summary(apps.up(ctx, missing_only=missing_only))
    return outcomes


def known_services() -> list[str]:
    """Every service ./dev runs: the infrastructure in start order, then ours."""
    return [service.name for service in all_services()] + [app.name for app in catalog.APPS]


def _check_names(names: list[str]) -> None:
    known = known_services()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise InfraError(f"unknown service {', '.join(unknown)}; known: {', '.join(known)}")


def restart(ctx: Context, names: list[str]) -> int:
    """Stop and start exactly the named services; everything else keeps running."""
    _check_names(names)
    infra = {service.name: service for service in all_services()}
    ours = {app.name for app in catalog.APPS}
    chosen = [infra[name] for name in names if name in infra]
    if chosen:
        stack.down(ctx, chosen)
        stack.summary(stack.up(ctx, chosen))
    if ours & set(names):
        apps.setup(ctx)  # idempotent: a service of newer code may need a new section or table
        apps.summary([(app, pid, "restarted") for app, pid in apps.start(ctx, ours & set(names))])
    return 0


def test(ctx: Context, pytest_args: list[str]) -> int:
    """The whole suite against real services: start what is missing, check, then pytest."""
    outcomes = up(ctx)
    try:
        code = check(ctx)
        if code != 0:
            return code
        with step("pytest (unit, integration, e2e)"):
            code = subprocess.call(
                [sys.executable, "-m", "pytest", *pytest_args], cwd=ctx.layout.project
            )
        if code == NO_TESTS_COLLECTED:
            say("pytest collected no tests: that is a failure for this suite")
            return 1
        return code
    finally:
        if os.environ.get("CI") == "true":
            # A CI machine should not keep JVMs running after the job; a developer's should.
            apps.stop(ctx)
            started_here = [outcome.service for outcome in outcomes if outcome.started_here]
            stack.down(ctx, started_here)
