"""How one messaging server is put together: each part built by a function of its own, in the
order they depend on each other, its clean-up pushed on the process's exit stack (so they stop
in reverse). ``serve`` is the whole of it; ``messaging/__main__.py`` only reads the settings.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import redis.asyncio as aioredis
from confluent_kafka import Consumer

from chatlib import cassandra, channels, ops, redis_client, telemetry, tokens
from chatlib.config_sections import Features, Files, Groups, Limits, Messages
from chatlib.hashing import partition_for
from chatlib.ids import Snowflake
from chatlib.kafka import AsyncProducer
from chatlib.leases import WorkerLease
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.object_store import ObjectStore
from chatlib.ownership import REFRESH_SECONDS, OwnerView, Routing
from chatlib.pace import Pace
from chatlib.partitioning import Partitioning
from chatlib.redis_wire import RedisWire
from chatlib.revocations import Revocations
from messaging.attachments import Attachments
from messaging.blocks import Blocks
from messaging.chats import ChatDirectory
from messaging.groups.changes import ChatChanges, UserNames
from messaging.groups.fence import Fence
from messaging.groups.service import GroupService
from messaging.groups.store import GroupStore
from messaging.history_api import HistoryApi
from messaging.send.admission import Admission
from messaging.send.amend import Amendments
from messaging.send.hold import SendHold
from messaging.send.receipts import ReceiptFanOut
from messaging.send.sender import Sender
from messaging.send.sent import SentMessages
from messaging.send.settle import Settler
from messaging.service import MessagingService
from messaging.settings import Settings
from messaging.signals.channel import Signals
from messaging.signals.presence import Presence
from messaging.signals.typing import TypingSignals
from messaging.streams.fanout import FanOut
from messaging.streams.leases import BEAT_SECONDS, PartitionLeases
from messaging.streams.recent import RecentDeliveries
from messaging.streams.registry import Redirect, StreamRegistry
from messaging.streams.replay import Replayer, Watermarks
from protos.chat.v1 import groups_pb2_grpc, history_pb2_grpc, messaging_pb2_grpc

logger = logging.getLogger("messaging")

#: gRPC cancels calls that arrive faster than the Python server loop picks them up once more
#: than 1,000 are pending (RST_STREAM, seen by clients as CANCELLED). A burst of reconnecting
#: clients after a restart is exactly that, so the queue may grow; each pending call is only a
#: few hundred bytes.
MAX_PENDING_CALLS = 100_000


@dataclass(frozen=True)
class Config:
    """The live configuration sections a messaging server follows."""

    live: LiveConfig
    partitioning: LiveSection[Partitioning]
    limits: LiveSection[Limits]
    features: LiveSection[Features]
    groups: LiveSection[Groups]
    messages: LiveSection[Messages]
    files: LiveSection[Files]


@dataclass(frozen=True)
class Platform:
    """What every part stands on: Redis, the live config, revocations, the worker lease,
    Cassandra and the history service."""

    redis: aioredis.Redis
    wire: RedisWire
    config: Config
    revoked: Revocations
    lease: WorkerLease
    db: cassandra.AsyncSession
    history: HistoryApi


@dataclass(frozen=True)
class SendPath:
    """Sends, changes and amendments: checked, admitted, produced, settled."""

    producer: AsyncProducer
    admission: Admission
    fence: Fence
    directory: ChatDirectory
    groups: GroupStore
    sender: Sender
    blocks: Blocks


@dataclass(frozen=True)
class Streams:
    """Live delivery: the streams held here, fed by the fan-out, resumed from memory or
    Kafka."""

    registry: StreamRegistry
    recent: RecentDeliveries
    watermarks: Watermarks
    replayer: Replayer
    fanout: FanOut
    #: The partitions this server feeds, and who feeds the others.
    leases: PartitionLeases
    routing: Routing


@dataclass(frozen=True)
class Ephemeral:
    """Typing and presence: never in the log, told over Redis."""

    signals: Signals
    presence: Presence
    typing: TypingSignals


#: After giving its partitions back, how long a stopping server still answers calls: a beat
#: for the others to take them, and two reads of the leases by every BFF.
REROUTE_SECONDS = BEAT_SECONDS + 2 * REFRESH_SECONDS


async def serve(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    base = await _platform(settings, stack, stop)
    send = _send_path(settings, stack, base)
    send.blocks.follow_in_background(stop, "blocks")
    streams = _streams(settings, stack, base)
    base.revoked.on_revoke(streams.registry.end_sessions)
    ephemeral = _ephemeral(settings, stack, base, send, streams, stop)
    # The fan-out stops after the leases are given back: giving one back needs it.
    fanout_stop = asyncio.Event()
    fanout = asyncio.create_task(streams.fanout.run(fanout_stop), name="fan-out")
    leases = asyncio.create_task(streams.leases.run(stop), name="partition-leases")
    presence = asyncio.create_task(ephemeral.presence.run(stop), name="presence")
    files = _attachments(settings, stack, base, send)
    if files is not None:
        # The holder of partition 0's lease sweeps (there is always one, moved within
        # seconds when its server dies).
        sweep = asyncio.create_task(
            files.sweep_forever(stop, settings.files_origins, lambda: streams.leases.holds(0)),
            name="attachments-sweep",
        )
        stack.push_async_callback(_awaited, sweep)
    server = await _grpc_server(settings, base, send, streams, ephemeral, files)
    runner = await ops.start(
        settings.common.ops_host,
        settings.ops_port,
        {
            "fan-out": _fanout_check(streams.fanout, fanout),
            "partition-leases": ops.loop_check(leases, "partition leases"),
            "partitions": streams.leases.check,
            "kafka": send.producer.check,
            "worker-lease": _lease_check(base.lease),
            "redis": ops.redis_ping(base.redis),
            "config": base.config.live.check,
            "revocations": base.revoked.check,
            "signals": ephemeral.signals.check,
            "blocks": send.blocks.check,
            "presence": ops.loop_check(presence, "presence"),
        },
        degraded={
            "config": base.config.live.problem,
            "revocations": base.revoked.problem,
            "blocks": send.blocks.problem,
            "signals": ephemeral.signals.problem,
        },
    )
    stack.push_async_callback(runner.cleanup)
    _say_ready(settings, base.config.partitioning.get())
    await stop.wait()
    # Partitions are given back first (their streams redirected to the survivors), while
    # the server still answers the calls those clients make on their way out.
    await leases
    # Calls still come while the others take the partitions and the BFFs read who holds
    # them now (every REFRESH_SECONDS): they are served here until then, not refused.
    await asyncio.sleep(REROUTE_SECONDS)
    # Streams still here (one still replaying when its partition moved) are told to resume
    # elsewhere rather than cancelled when the grace below runs out.
    streams.registry.close_all()
    fanout_stop.set()
    await server.stop(5)
    await fanout
    await presence
    await ephemeral.presence.close()


async def _platform(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> Platform:
    common = settings.common
    redis = redis_client.connect(common.redis)
    stack.push_async_callback(redis.aclose)
    wire = RedisWire(common.redis)
    stack.callback(wire.close)
    config = await _config(settings, stack, stop)
    revoked = Revocations(common.redis, f"messaging:{settings.server_name}")
    stack.push_async_callback(revoked.close)
    await revoked.start(stop)
    lease = WorkerLease(redis)
    await lease.acquire()
    stack.push_async_callback(lease.release)
    cluster, session = cassandra.connect(common.cassandra)
    stack.callback(cluster.shutdown)
    db = cassandra.AsyncSession(session, common.keyspace)
    return Platform(redis, wire, config, revoked, lease, db, _history(settings, stack))


async def _config(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> Config:
    partitioning = LiveSection("partitioning", Partitioning.parse)
    limits = LiveSection("limits", Limits.parse)
    features = LiveSection("features", Features.parse)
    groups = LiveSection("groups", Groups.parse)
    messages = LiveSection("messages", Messages.parse)
    files = LiveSection("files", Files.parse)
    live = LiveConfig(
        settings.common.redis, [partitioning, limits, features, groups, messages, files]
    )
    stack.push_async_callback(live.close)
    await live.start(stop)
    return Config(live, partitioning, limits, features, groups, messages, files)


def _history(settings: Settings, stack: AsyncExitStack) -> HistoryApi:
    channel = channels.to_service(
        settings.history_address,
        settings.common.tls,
        interceptors=telemetry.grpc_client_interceptors(),
    )
    stack.push_async_callback(channel.close)
    return HistoryApi(history_pb2_grpc.HistoryServiceStub(channel), settings.common.jwt_secret)


def _send_path(settings: Settings, stack: AsyncExitStack, base: Platform) -> SendPath:
    common = settings.common
    producer = AsyncProducer(
        common.kafka.config(**{"linger.ms": settings.producer_linger_ms}),
        pace=Pace(settings.batch_above_per_s) if settings.batch_above_per_s else None,
    )
    stack.callback(producer.close)
    # A process that lost its lease must not write in its old name any more: what it has not
    # sent yet is dropped (those sends fail, certainly unwritten, and are retried).
    base.lease.on_lost(producer.purge_queued)
    admission = Admission(base.wire)
    settler = Settler(producer, admission, common.kafka, common.deliveries_topic)
    stack.callback(settler.close)
    groups = GroupStore(base.db)
    blocks = Blocks(base.db, base.redis, common.redis, base.history, settings.server_name)
    stack.push_async_callback(blocks.close)
    directory = ChatDirectory(base.db, groups, base.history, blocks)
    fence = Fence(base.wire)
    hold = SendHold(base.config.partitioning, base.redis, settings.server_name)
    stack.push_async_callback(hold.close)
    sender = Sender(
        producer,
        admission,
        base.redis,
        directory,
        fence,
        Snowflake(base.lease.check),
        base.lease,
        settler,
        limits=base.config.limits,
        features=base.config.features,
        partitioning=base.config.partitioning,
        hold=hold,
        topic=common.deliveries_topic,
    )
    return SendPath(producer, admission, fence, directory, groups, sender, blocks)


def _streams(settings: Settings, stack: AsyncExitStack, base: Platform) -> Streams:
    common, config = settings.common, base.config
    watermarks = Watermarks(common.kafka, common.deliveries_topic)
    stack.callback(watermarks.close)
    replayer = Replayer(common.kafka, common.deliveries_topic)
    stack.callback(replayer.close)
    fanout_config = common.kafka.config(
        **{
            # One group for every messaging server: a partition's position, committed by the
            # server that gives it up, is where the next owner starts.
            "group.id": settings.fanout_group,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.fanout_fetch_wait_ms,
            "fetch.min.bytes": settings.fanout_fetch_min_bytes,
        }
    )
    consumer = Consumer(fanout_config)
    stack.callback(consumer.close)
    # Its twin for quiet traffic: a fetch answered as soon as a record is there.
    quick = None
    if settings.batch_above_per_s:
        quick = Consumer({**fanout_config, "fetch.min.bytes": 1})
        stack.callback(quick.close)
    registry = StreamRegistry()
    recent = RecentDeliveries(settings.recent_bytes_per_partition)
    view = OwnerView(base.redis)
    placed = config.partitioning.get().server(settings.server_name)
    target = placed.target if placed is not None else f"{settings.host}:{settings.port}"

    def apply(held: frozenset[int]) -> None:
        fanout.follow(held, leases.next_owner)

    async def settled() -> None:
        await fanout.settled()

    leases = PartitionLeases(
        base.redis, settings.server_name, target, config.partitioning, view, apply, settled
    )
    fanout = FanOut(
        consumer,
        registry,
        recent,
        watermarks,
        common.deliveries_topic,
        leases.holds,
        group=settings.fanout_group,
        quick=quick,
        pace=Pace(settings.batch_above_per_s) if quick is not None else None,
    )
    routing = Routing(config.partitioning, view)
    _rehome_on_growth(config.partitioning, registry, routing)
    return Streams(registry, recent, watermarks, replayer, fanout, leases, routing)


def _rehome_on_growth(
    partitioning: LiveSection[Partitioning], registry: StreamRegistry, routing: Routing
) -> None:
    """When partitions are added, the streams of users who moved go to their new partition."""
    count = partitioning.get().partitions

    def changed(value: Partitioning) -> None:
        nonlocal count
        if value.partitions == count:
            return
        count = value.partitions

        def to(partition: int) -> Redirect:
            owner = routing.owner(partition)
            return Redirect(owner.name, owner.target)

        moved = registry.rehome(lambda user: partition_for(user, value.partitions), to)
        logger.info("partitions went to %d: %d streams moved to their new partition", count, moved)

    partitioning.on_change(changed)


def _ephemeral(
    settings: Settings,
    stack: AsyncExitStack,
    base: Platform,
    send: SendPath,
    streams: Streams,
    stop: asyncio.Event,
) -> Ephemeral:
    name, partitioning = settings.server_name, base.config.partitioning
    signals = Signals(settings.common.redis, name, base.redis, streams.routing, streams.registry)
    signals.follow_in_background(stop, "signals")
    stack.push_async_callback(signals.close)
    presence = Presence(
        name, base.redis, base.history, send.directory, signals, partitioning, streams.registry
    )
    typing = TypingSignals(send.directory, signals, base.config.messages)
    return Ephemeral(signals, presence, typing)


def _attachments(
    settings: Settings, stack: AsyncExitStack, base: Platform, send: SendPath
) -> Attachments | None:
    if settings.object_store is None:
        logger.warning("no object store configured (CHAT_S3_SECRET_KEY_FILE): attachments off")
        return None
    files = Attachments(
        base.db, ObjectStore(settings.object_store), send.sender.ids, base.config.files
    )
    stack.push_async_callback(files.close)
    return files


async def _awaited(task: asyncio.Task[None]) -> None:
    await task


async def _grpc_server(
    settings: Settings,
    base: Platform,
    send: SendPath,
    streams: Streams,
    ephemeral: Ephemeral,
    files: Attachments | None,
) -> grpc.aio.Server:
    changes = ChatChanges(
        sender=send.sender,
        admission=send.admission,
        store=send.groups,
        fence=send.fence,
        names=UserNames(base.history),
        lease=base.lease,
        groups=base.config.groups,
        history=base.history,
    )
    verifier = tokens.Verifier(settings.common.jwt_secret, base.revoked)
    messaging = MessagingService(
        server_name=settings.server_name,
        routing=streams.routing,
        leases=streams.leases,
        sender=send.sender,
        directory=send.directory,
        changes=changes,
        receipts=ReceiptFanOut(send.sender),
        amendments=Amendments(
            send.sender,
            send.directory,
            send.groups,
            SentMessages(base.wire),
            base.history,
            base.config.messages,
            on_deleted=files.message_deleted if files is not None else None,
        ),
        typing=ephemeral.typing,
        presence=ephemeral.presence,
        registry=streams.registry,
        recent=streams.recent,
        replayer=streams.replayer,
        watermarks=streams.watermarks,
        fanout=streams.fanout,
        verifier=verifier,
        stream_queue=settings.stream_queue,
        blocks=send.blocks,
        history=base.history,
        files=files,
    )
    server = grpc.aio.server(
        interceptors=telemetry.grpc_server_interceptors(settings.common.trace_sample_ratio),
        options=[
            ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            *channels.SERVER_OPTIONS,
        ],
    )
    groups = GroupService(changes, verifier, base.config.groups)
    groups_pb2_grpc.add_GroupServiceServicer_to_server(groups, server)
    messaging_pb2_grpc.add_MessagingServiceServicer_to_server(messaging, server)
    channels.listen(server, f"{settings.host}:{settings.port}", settings.common.tls)
    await server.start()
    return server


def _fanout_check(fanout: FanOut, task: asyncio.Task[None]) -> ops.Check:
    async def check() -> str | None:
        if task.done():
            return f"fan-out ended: {task.exception()!r}"
        if fanout.stuck_for() > ops.STUCK_SECONDS:
            return f"the fan-out has not polled Kafka for {fanout.stuck_for():.0f} s"
        return None if fanout.assigned else "fan-out is not consuming its partitions yet"

    return check


def _lease_check(lease: WorkerLease) -> ops.Check:
    async def check() -> str | None:
        lease.check()
        return None

    return check


def _say_ready(settings: Settings, partitioning: Partitioning) -> None:
    mine = partitioning.server(settings.server_name)
    logger.info(
        "messaging %s on %s:%d owns partitions %s of %d",
        settings.server_name,
        settings.host,
        settings.port,
        mine.describe() if mine is not None else "nothing",
        partitioning.partitions,
    )
