"""How a history process is put together: the writer (a consumer of the deliveries topic) or
the query service (gRPC), each part built by a function of its own, its clean-up pushed on the
process's exit stack."""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack
from typing import Any

import grpc
from confluent_kafka import Consumer

from chatlib import cassandra, channels, ops, redis_client, telemetry, tokens
from chatlib.config_sections import Limits
from chatlib.ids import Snowflake
from chatlib.kafka import AsyncProducer
from chatlib.leases import WorkerLease
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.revocations import Revocations
from history.query_service import HistoryService
from history.settings import Settings
from history.store import HistoryStore
from history.users import UserRegistry
from history.writer import HistoryWriter
from protos.chat.v1 import history_pb2_grpc

logger = logging.getLogger("history")


def _store(settings: Settings, stack: AsyncExitStack) -> tuple[HistoryStore, ops.Check]:
    """The store, and a readiness check that Cassandra answers."""
    common = settings.common
    cluster, session = cassandra.connect(common.cassandra)
    stack.callback(cluster.shutdown)
    db = cassandra.AsyncSession(session, common.keyspace)

    async def check() -> str | None:
        await db.execute("SELECT release_version FROM system.local")
        return None

    return HistoryStore(db), check


async def writer(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    common = settings.common
    store, cassandra_check = _store(settings, stack)

    def make_consumer() -> Consumer:
        return Consumer(
            common.kafka.config(
                **{
                    "group.id": settings.writer_group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    # A writer that died (SIGKILL, lost host) holds its partitions until its
                    # session times out; 10 s bounds that pause instead of the client default of
                    # 45 s. One restarted under its static id (below) takes them back at once.
                    "session.timeout.ms": 10_000,
                    "heartbeat.interval.ms": 2_000,
                    **(
                        {"group.instance.id": settings.writer_instance}
                        if settings.writer_instance
                        else {}
                    ),
                    # Persistence is about throughput: fewer, fuller fetches cost the broker and
                    # this process far less CPU than many small ones (live delivery does not wait
                    # for this consumer).
                    "fetch.wait.max.ms": 100,
                    "fetch.min.bytes": 1 << 20,
                    "on_commit": _commit_failed,
                }
            )
        )

    consumer = make_consumer()
    producer = AsyncProducer(common.kafka.config())
    stack.callback(producer.close)
    history_writer = HistoryWriter(
        consumer,
        store,
        producer,
        topic=common.deliveries_topic,
        dead_letter_topic=common.dead_letter_topic,
        group=settings.writer_group,
        renew=make_consumer,
    )
    # The consumer in use at the end (the loop replaces one that failed for good).
    stack.callback(lambda: history_writer.consumer.close())
    task = asyncio.create_task(history_writer.run(stop), name="history-writer")
    runner = await ops.start(
        common.ops_host,
        settings.ops_port,
        {
            "cassandra": cassandra_check,
            "kafka": producer.check,
            "consumer": history_writer.check(task, "writer loop"),
        },
    )
    stack.push_async_callback(runner.cleanup)
    logger.info("history writer consuming %s as %s", common.deliveries_topic, settings.writer_group)
    await task  # ends when stop is set; an exception here fails the process loudly


async def query(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    common = settings.common
    store, cassandra_check = _store(settings, stack)
    client = redis_client.connect(common.redis)
    stack.push_async_callback(client.aclose)
    limits = LiveSection("limits", Limits.parse)
    live = LiveConfig(common.redis, [limits])
    stack.push_async_callback(live.close)
    await live.start(stop)
    revoked = Revocations(common.redis, f"history-query:{os.getpid()}")
    stack.push_async_callback(revoked.close)
    await revoked.start(stop)
    lease = WorkerLease(client)
    await lease.acquire()
    stack.push_async_callback(lease.release)
    users_producer = AsyncProducer(common.kafka.config())
    stack.callback(users_producer.close)
    server = grpc.aio.server(
        interceptors=telemetry.grpc_server_interceptors(common.trace_sample_ratio),
        options=channels.SERVER_OPTIONS,
    )
    history_pb2_grpc.add_HistoryServiceServicer_to_server(
        HistoryService(
            store,
            UserRegistry(store, users_producer, common.users_topic),
            Snowflake(lease.check),
            tokens.Verifier(common.jwt_secret, revoked),
            limits,
        ),
        server,
    )
    address = f"{settings.query_host}:{settings.query_port}"
    channels.listen(server, address, common.tls)
    await server.start()
    runner = await ops.start(
        common.ops_host,
        settings.ops_port,
        {"cassandra": cassandra_check, "config": live.check, "revocations": revoked.check},
        degraded={"config": live.problem, "revocations": revoked.problem},
    )
    stack.push_async_callback(runner.cleanup)
    logger.info("history query service on %s", address)
    await stop.wait()
    await server.stop(5)


def _commit_failed(error: Any, partitions: list[Any]) -> None:
    if error is not None:
        logger.warning("offset commit failed (the next one covers it): %s", error)
