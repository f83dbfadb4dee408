"""``python -m messaging [serve | setup | migrate | rebuild --keyspace NAME]``: a messaging
server (CHAT_SERVER_NAME names its partition range), or the commands that prepare its topics
and tables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import messaging
from chatlib import lifecycle, migrations
from chatlib.kafka import ensure_topic
from chatlib.settings import Common, Env
from messaging import assembly, rebuild
from messaging.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-messaging")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=("serve", "setup", "migrate", "rebuild")
    )
    parser.add_argument(
        "--keyspace", help="rebuild: the keyspace to make from the log (not the live one)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "setup":
        return asyncio.run(_setup())
    if args.command in ("migrate", "rebuild"):
        # None accepts a token: an operator's shell need not hold the key.
        common = Common(Env({"CHAT_JWT_SECRET": "-", **os.environ}))
        if args.command == "migrate":
            return migrations.migrate(common, "messaging", messaging.MIGRATIONS)
        if not args.keyspace or not migrations.KEYSPACE.fullmatch(args.keyspace):
            parser.error("rebuild needs --keyspace NAME (letters, digits, _; at most 48)")
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        replayed = rebuild.run(common, args.keyspace)
        print(f"messaging's tables in {args.keyspace} rebuilt from the log: {replayed}")
        return 0
    settings = Settings.from_env(os.environ)
    return lifecycle.serve(
        "messaging",
        settings.common,
        lambda stack, stop: assembly.serve(settings, stack, stop),
        instance=settings.server_name,
    )


async def _setup() -> int:
    """Create the topics (idempotent). The config service seeds the partitioning config."""
    read = Env(os.environ)
    common = Common(read)
    partitions = read.integer("CHAT_PARTITIONS", 12, minimum=1)
    replication = read.integer("CHAT_TOPIC_REPLICATION", 1, minimum=1)
    insync = str(min(2, replication))
    week_ms = str(7 * 24 * 3600 * 1000)
    topics = (
        # Kept for ever: a keyspace is rebuilt by replaying it (python -m history rebuild).
        (common.deliveries_topic, partitions, {"retention.ms": "-1"}),
        (common.dead_letter_topic, 1, {"retention.ms": week_ms}),
        (common.notifications_dead_letter_topic, 1, {"retention.ms": week_ms}),
        # One record per user, compacted: the newest record of each key is kept for ever.
        (common.users_topic, 4, {"cleanup.policy": "compact"}),
    )
    for topic, count, config in topics:
        created = await asyncio.to_thread(
            ensure_topic,
            common.kafka,
            topic,
            count,
            replication,
            {**config, "min.insync.replicas": insync},
        )
        print(f"topic {topic}: {'created' if created else 'exists'} ({count} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
