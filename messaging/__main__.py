"""``python -m messaging``: one messaging server (CHAT_SERVER_NAME names its partition range)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import AsyncExitStack

import grpc
from confluent_kafka import Consumer

from chatlib import cassandra, lifecycle, ops, redis_client, telemetry, tokens
from chatlib.config_sections import Features, Groups, Limits, Messages
from chatlib.ids import Snowflake
from chatlib.kafka import AsyncProducer, ensure_topic
from chatlib.leases import WorkerLease
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.partitioning import Partitioning
from chatlib.redis_wire import RedisWire
from chatlib.revocations import Revocations
from chatlib.settings import Common, Env
from messaging.admission import Admission
from messaging.amend import Amendments
from messaging.changes import ChatChanges, UserNames
from messaging.chats import ChatDirectory
from messaging.fanout import FanOut
from messaging.fence import Fence
from messaging.group_service import GroupService
from messaging.group_store import GroupStore
from messaging.presence import Presence
from messaging.receipts import ReceiptFanOut
from messaging.recent import RecentDeliveries
from messaging.replay import Replayer, Watermarks
from messaging.send import Sender
from messaging.sent import SentMessages
from messaging.service import MessagingService
from messaging.settings import Settings
from messaging.settle import Settler
from messaging.signals import Signals
from messaging.streams import StreamRegistry
from messaging.typing_signal import TypingSignals
from protos.chat.v1 import groups_pb2_grpc, history_pb2_grpc, messaging_pb2_grpc

logger = logging.getLogger("messaging")


def main(argv: list[str]) -> int:
    if argv == ["setup"]:
        return asyncio.run(_setup())
    if argv:
        print("usage: python -m messaging [setup]", file=sys.stderr)
        return 2
    settings = Settings.from_env(os.environ)
    return lifecycle.serve(
        "messaging",
        settings.common,
        lambda stack, stop: _run(settings, stack, stop),
        instance=settings.server_name,
    )


async def _run(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    common = settings.common
    client = redis_client.connect(common.redis_url)
    stack.push_async_callback(client.aclose)
    routing = LiveSection("partitioning", Partitioning.parse)
    limits = LiveSection("limits", Limits.parse)
    features = LiveSection("features", Features.parse)
    groups = LiveSection("groups", Groups.parse)
    messages = LiveSection("messages", Messages.parse)
    live = LiveConfig(common.redis_url, [routing, limits, features, groups, messages])
    stack.push_async_callback(live.close)
    await live.start(stop)
    revoked = Revocations(common.redis_url, f"messaging:{settings.server_name}")
    stack.push_async_callback(revoked.close)
    await revoked.start(stop)
    lease = WorkerLease(client)
    await lease.acquire()
    stack.push_async_callback(lease.release)

    cluster, session = cassandra.connect(common.cassandra_hosts, common.cassandra_port)
    stack.callback(cluster.shutdown)
    db = cassandra.AsyncSession(session, common.keyspace)
    group_store = GroupStore(db)
    directory = ChatDirectory(db, group_store)
    producer = AsyncProducer(
        {"bootstrap.servers": common.kafka_bootstrap, "linger.ms": settings.producer_linger_ms}
    )
    stack.callback(producer.close)
    # A process that lost its lease must not write in its old name any more: what it has not
    # sent yet is dropped (those sends fail, certainly unwritten, and are retried).
    lease.on_lost(producer.purge_queued)
    watermarks = Watermarks(common.kafka_bootstrap, common.deliveries_topic)
    stack.callback(watermarks.close)
    replayer = Replayer(common.kafka_bootstrap, common.deliveries_topic)
    stack.callback(replayer.close)
    wire = RedisWire(common.redis_url)
    stack.callback(wire.close)
    admission = Admission(wire)
    fence = Fence(wire)
    settler = Settler(producer, admission, common.kafka_bootstrap, common.deliveries_topic)
    stack.callback(settler.close)
    registry = StreamRegistry()
    revoked.on_revoke(registry.end_sessions)
    recent = RecentDeliveries(settings.recent_bytes_per_partition)
    sender = Sender(
        producer,
        admission,
        client,
        directory,
        fence,
        Snowflake(lease.check),
        lease,
        settler,
        limits=limits,
        features=features,
        partitioning=routing,
        topic=common.deliveries_topic,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": common.kafka_bootstrap,
            # One group for every messaging server: a partition's position, committed by the
            # server that gives it up, is where the next owner starts.
            "group.id": settings.fanout_group,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.fanout_fetch_wait_ms,
            "fetch.min.bytes": settings.fanout_fetch_min_bytes,
        }
    )
    stack.callback(consumer.close)
    fanout = FanOut(
        consumer,
        registry,
        recent,
        watermarks,
        common.deliveries_topic,
        settings.server_name,
        group=settings.fanout_group,
    )
    fanout.follow(routing.get())
    routing.on_change(fanout.follow)
    fanout_task = asyncio.create_task(fanout.run(stop), name="fan-out")

    server = grpc.aio.server(
        interceptors=telemetry.grpc_server_interceptors(common.trace_sample_ratio),
        # gRPC cancels calls that arrive faster than the Python server loop picks them up once
        # more than 1,000 are pending (RST_STREAM, seen by clients as CANCELLED). A burst of
        # reconnecting clients after a restart is exactly that, so the queue may grow; each
        # pending call is only a few hundred bytes.
        options=[
            ("grpc.server.max_pending_requests", 100_000),
            ("grpc.server.max_pending_requests_hard_limit", 100_000),
        ],
    )
    verifier = tokens.Verifier(common.jwt_secret, revoked)
    history_channel = grpc.aio.insecure_channel(
        settings.history_address,
        interceptors=telemetry.grpc_client_interceptors(),
    )
    stack.push_async_callback(history_channel.close)
    changes = ChatChanges(
        sender=sender,
        admission=admission,
        store=group_store,
        fence=fence,
        names=UserNames(db),
        lease=lease,
        groups=groups,
        history=history_pb2_grpc.HistoryServiceStub(history_channel),
        secret=common.jwt_secret,
    )
    signals = Signals(common.redis_url, settings.server_name, client, routing, registry)
    signals.follow_in_background(stop, "signals")
    stack.push_async_callback(signals.close)
    presence = Presence(settings.server_name, client, db, directory, signals, routing, registry)
    presence_task = asyncio.create_task(presence.run(stop), name="presence")
    groups_pb2_grpc.add_GroupServiceServicer_to_server(
        GroupService(changes, verifier, groups), server
    )
    messaging_pb2_grpc.add_MessagingServiceServicer_to_server(
        MessagingService(
            server_name=settings.server_name,
            partitioning=routing,
            sender=sender,
            directory=directory,
            changes=changes,
            receipts=ReceiptFanOut(sender),
            amendments=Amendments(sender, directory, group_store, SentMessages(wire), db, messages),
            typing=TypingSignals(directory, signals, messages),
            presence=presence,
            registry=registry,
            recent=recent,
            replayer=replayer,
            watermarks=watermarks,
            fanout=fanout,
            verifier=verifier,
            stream_queue=settings.stream_queue,
        ),
        server,
    )
    address = f"{settings.host}:{settings.port}"
    server.add_insecure_port(address)
    await server.start()

    async def fanout_check() -> str | None:
        if fanout_task.done():
            return f"fan-out ended: {fanout_task.exception()!r}"
        if fanout.stuck_for() > ops.STUCK_SECONDS:
            return f"the fan-out has not polled Kafka for {fanout.stuck_for():.0f} s"
        return None if fanout.assigned else "fan-out is not consuming its partitions yet"

    async def lease_check() -> str | None:
        lease.check()
        return None

    runner = await ops.start(
        common.ops_host,
        settings.ops_port,
        {
            "fan-out": fanout_check,
            "kafka": producer.check,
            "worker-lease": lease_check,
            "redis": ops.redis_ping(client),
            "config": live.check,
            "revocations": revoked.check,
            "signals": signals.check,
            "presence": ops.loop_check(presence_task, "presence"),
        },
        degraded={
            "config": live.problem,
            "revocations": revoked.problem,
            "signals": signals.problem,
        },
    )
    stack.push_async_callback(runner.cleanup)
    mine = routing.get().server(settings.server_name)
    logger.info(
        "messaging %s on %s owns partitions %s of %d",
        settings.server_name,
        address,
        mine.describe() if mine is not None else "nothing",
        routing.get().partitions,
    )
    await stop.wait()
    await server.stop(5)
    await fanout_task
    await presence_task
    await presence.close()


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
        # One record per user, compacted: the newest record of each key is kept for ever.
        (common.users_topic, 4, {"cleanup.policy": "compact"}),
    )
    for topic, count, config in topics:
        created = await asyncio.to_thread(
            ensure_topic,
            common.kafka_bootstrap,
            topic,
            count,
            replication,
            {**config, "min.insync.replicas": insync},
        )
        print(f"topic {topic}: {'created' if created else 'exists'} ({count} partitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
