"""``python -m notifier``: notify recipients with no live stream of their messages, through
the webhook in the live config section ``notifications``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import AsyncExitStack

import aiohttp
from confluent_kafka import Consumer

from chatlib import lifecycle, ops, redis_client
from chatlib.config_sections import Notifications
from chatlib.kafka import AsyncProducer
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.settings import Common, Env
from notifier.consumer import Notifier
from notifier.webhook import Webhook

logger = logging.getLogger("notifier")


def main(argv: list[str] | None = None) -> int:
    if sys.argv[1:] if argv is None else argv:
        print("usage: python -m notifier", file=sys.stderr)
        return 2
    read = Env(os.environ)
    common = Common(read)
    ops_port = read.integer("CHAT_OPS_PORT", 9601, minimum=1)
    group = read.text("CHAT_NOTIFIER_GROUP", "notifier")
    return lifecycle.serve(
        "notifier", common, lambda stack, stop: _run(common, ops_port, group, stack, stop)
    )


async def _run(
    common: Common, ops_port: int, group: str, stack: AsyncExitStack, stop: asyncio.Event
) -> None:
    client = redis_client.connect(common.redis)
    stack.push_async_callback(client.aclose)
    settings = LiveSection("notifications", Notifications.parse)
    live = LiveConfig(common.redis, [settings])
    stack.push_async_callback(live.close)
    await live.start(stop)

    def make_consumer() -> Consumer:
        return Consumer(
            common.kafka.config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    # A new notifier starts at the log's end: the past is not news.
                    "auto.offset.reset": "latest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 2_000,
                    # Notifications wait seconds anyway (bursts): fuller fetches cost less.
                    "fetch.wait.max.ms": 200,
                    "fetch.min.bytes": 64 << 10,
                }
            )
        )

    producer = AsyncProducer(common.kafka.config())
    stack.callback(producer.close)
    http = aiohttp.ClientSession()
    stack.push_async_callback(http.close)
    notifier = Notifier(
        make_consumer(),
        client,
        Webhook(http),
        producer,
        settings,
        topic=common.deliveries_topic,
        dead_letter_topic=common.notifications_dead_letter_topic,
        group=group,
        renew=make_consumer,
    )
    # The consumer in use at the end (the loop replaces one that failed for good).
    stack.callback(lambda: notifier.consumer.close())
    task = asyncio.create_task(notifier.run(stop), name="notifier")

    runner = await ops.start(
        common.ops_host,
        ops_port,
        {
            "kafka": producer.check,
            "consumer": notifier.check(task, "notifier loop"),
            "redis": ops.redis_ping(client),
            "config": live.check,
        },
        degraded={"config": live.problem},
    )
    stack.push_async_callback(runner.cleanup)
    logger.info("notifier consuming %s as %s", common.deliveries_topic, group)
    await task


if __name__ == "__main__":
    sys.exit(main())
