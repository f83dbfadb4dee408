"""``python -m config_service serve | get | set | history | seed | grow``.

``serve`` runs the admin HTTP API. The other commands act on Redis directly through the same
store (same validation, versioning, audit trail and announcements) and record the operating
system user as who made the change.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from confluent_kafka import KafkaException

from chatlib import lifecycle, ops, redis_client
from chatlib.config_checks import InvalidConfig
from chatlib.config_sections import (
    DEFAULT_AUTH,
    DEFAULT_FEATURES,
    DEFAULT_FILES,
    DEFAULT_GROUPS,
    DEFAULT_LIMITS,
    DEFAULT_MESSAGES,
    DEFAULT_NOTIFICATIONS,
    DEFAULT_SESSIONS,
    DEFAULT_WEB,
    PARSERS,
)
from chatlib.settings import Common, Env, redis_access
from config_service.api import create_app
from config_service.grow import GrowthFailed, grow
from config_service.settings import Settings
from config_service.store import ConfigStore, VersionConflict

logger = logging.getLogger("config_service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-admin")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the admin HTTP API")
    get = commands.add_parser("get", help="print a section (or every section)")
    get.add_argument("section", nargs="?", choices=sorted(PARSERS))
    put = commands.add_parser(
        "set",
        help="replace a section: a JSON document, @file, or key=value pairs merged into it",
    )
    put.add_argument("section")
    put.add_argument("changes", nargs="+")
    put.add_argument("--if-version", type=int, help="refuse unless the section is at this version")
    history = commands.add_parser("history", help="print a section's audit trail")
    history.add_argument("section")
    history.add_argument("--limit", type=int, default=20)
    commands.add_parser("seed", help="store the default of every section that is not set yet")
    grow_command = commands.add_parser(
        "grow",
        help="add partitions to the deliveries topic of the running stack, without losing or"
        " reordering a message (sends are held for about a second)",
    )
    grow_command.add_argument("--to", type=int, required=True, help="the new partition count")
    args = parser.parse_args(argv)
    if args.command == "serve":
        settings = Settings.from_env(os.environ)
        common = Common(Env(os.environ))
        return lifecycle.serve(
            "config-service", common, lambda stack, stop: _serve(settings, stack, stop)
        )
    try:
        return asyncio.run(_command(args))
    except (InvalidConfig, VersionConflict) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 1
    except (aioredis.RedisError, OSError) as exc:
        print(f"the config store (Redis) is unreachable: {exc}", file=sys.stderr)
        return 1
    except (GrowthFailed, KafkaException) as exc:
        print(f"partitions not added: {exc}", file=sys.stderr)
        return 1


async def _serve(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    client = redis_client.connect(settings.redis)
    stack.push_async_callback(client.aclose)
    if not settings.admin_tokens:
        raise SystemExit("CHAT_ADMIN_TOKENS is empty: nobody could use the admin API")
    runner = web.AppRunner(
        create_app(ConfigStore(client), settings.admin_tokens, client), access_log=None
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.host, settings.port).start()

    ops_runner = await ops.start(
        settings.ops_host, settings.ops_port, {"redis": ops.redis_ping(client)}
    )
    stack.push_async_callback(ops_runner.cleanup)
    logger.info("config service admin API on http://%s:%d", settings.host, settings.port)
    await stop.wait()


async def _command(args: argparse.Namespace) -> int:
    read = Env(os.environ)
    client = redis_client.connect(redis_access(read))
    store = ConfigStore(client)
    operator = f"cli:{getpass.getuser()}"
    try:
        if args.command == "get":
            for section in [args.section] if args.section else sorted(PARSERS):
                document = await store.get(section)
                _print(json.loads(document.to_json()) if document else {section: None})
        elif args.command == "history":
            _print(
                {"section": args.section, "entries": await store.history(args.section, args.limit)}
            )
        elif args.command == "set":
            value = await _new_value(store, args.section, args.changes)
            outcome = await store.replace(
                args.section, value, by=operator, expected_version=args.if_version
            )
            state = "stored as" if outcome.changed else "unchanged at"
            print(f"{args.section}: {state} version {outcome.document.version}")
        elif args.command == "grow":
            await grow(Common(read), client, store, args.to, by=operator)
        elif args.command == "seed":
            partitioning = _json(
                read.text("CHAT_PARTITIONING_DEFAULT"), "CHAT_PARTITIONING_DEFAULT"
            )
            topic_partitions = read.integer("CHAT_PARTITIONS", 0)
            if topic_partitions and (
                not isinstance(partitioning, dict)
                or partitioning.get("partitions") != topic_partitions
            ):
                raise InvalidConfig(
                    "CHAT_PARTITIONING_DEFAULT must have as many partitions as the deliveries"
                    f" topic (CHAT_PARTITIONS={topic_partitions})"
                )
            defaults: dict[str, Any] = {
                "partitioning": partitioning,
                "limits": DEFAULT_LIMITS.to_value(),
                "features": DEFAULT_FEATURES.to_value(),
                "auth": DEFAULT_AUTH.to_value(),
                "sessions": DEFAULT_SESSIONS.to_value(),
                "web": DEFAULT_WEB.to_value(),
                "groups": DEFAULT_GROUPS.to_value(),
                "messages": DEFAULT_MESSAGES.to_value(),
                "notifications": DEFAULT_NOTIFICATIONS.to_value(),
                "files": DEFAULT_FILES.to_value(),
            }
            for section, value in defaults.items():
                outcome = await store.seed(section, value, by=operator)
                state = "seeded" if outcome.changed else "exists"
                print(f"config {section}: {state} (version {outcome.document.version})")
    finally:
        await client.aclose()
    return 0


async def _new_value(store: ConfigStore, section: str, changes: list[str]) -> Any:
    """A whole document (JSON text or @file), or key=value pairs applied to the current one."""
    if len(changes) == 1 and not _is_pair(changes[0]):
        raw = changes[0]
        if not raw.startswith("@"):
            return _json(raw, f"the new {section}")
        try:
            text = await asyncio.to_thread(Path(raw[1:]).read_text)
        except OSError as exc:
            raise InvalidConfig(f"cannot read {raw[1:]}: {exc.strerror}") from None
        return _json(text, raw[1:])
    current = await store.get(section)
    if current is None:
        raise InvalidConfig(f"{section} is not set yet; give the whole document")
    value = dict(current.value)
    for change in changes:
        if not _is_pair(change):
            raise InvalidConfig(f"{change!r} is not key=value")
        key, _, raw = change.partition("=")
        try:
            value[key] = json.loads(raw)
        except json.JSONDecodeError:
            value[key] = raw  # a bare word is a string
    return value


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidConfig(f"{what} is not valid JSON: {exc}") from None


def _is_pair(argument: str) -> bool:
    key, sep, _ = argument.partition("=")
    return bool(sep) and key.isidentifier()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
