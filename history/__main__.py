"""``python -m history migrate | writer | query | rebuild --keyspace NAME | backfill-users``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import history
from chatlib import lifecycle, migrations
from history import assembly, rebuild
from history.settings import Settings

COMMANDS = ("migrate", "writer", "query", "rebuild", "backfill-users")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-history")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument(
        "--keyspace", help="rebuild: the keyspace to make from the log (not the live one)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    environ: dict[str, str] = dict(os.environ)
    if args.command in ("migrate", "rebuild", "backfill-users"):
        # None accepts a token: an operator's shell need not hold the key.
        environ.setdefault("CHAT_JWT_SECRET", "-")
    settings = Settings.from_env(environ)
    common = settings.common
    if args.command == "migrate":
        return migrations.migrate(common, "history", history.MIGRATIONS)
    if args.command == "backfill-users":
        print(f"{rebuild.backfill_users(common)} users written to {common.users_topic}")
        return 0
    if args.command == "rebuild":
        if not args.keyspace or not migrations.KEYSPACE.fullmatch(args.keyspace):
            parser.error("rebuild needs --keyspace NAME (letters, digits, _; at most 48)")
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        replayed = rebuild.run(common, args.keyspace)
        print(f"history's tables in {args.keyspace} rebuilt from the log: {replayed}")
        return 0
    run = assembly.writer if args.command == "writer" else assembly.query
    return lifecycle.serve(
        f"history-{args.command}", common, lambda stack, stop: run(settings, stack, stop)
    )


if __name__ == "__main__":
    sys.exit(main())
