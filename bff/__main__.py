"""``python -m bff``: the HTTP API for browsers and other HTTP clients."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import AsyncExitStack

import grpc
from aiohttp import web

from bff.app import Backends, create_app
from bff.settings import Settings
from chatlib import lifecycle, ops, redis_client, telemetry, tokens
from chatlib.config_sections import Features
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.partitioning import Partitioning
from protos.chat.v1 import history_pb2_grpc

logger = logging.getLogger("bff")


def main() -> int:
    settings = Settings.from_env(os.environ)
    return lifecycle.serve("bff", settings.common, lambda stack, stop: _run(settings, stack, stop))


async def _run(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    telemetry.instrument_aiohttp_server()
    interceptors = telemetry.grpc_client_interceptors()
    history_channel = grpc.aio.insecure_channel(settings.history_address, interceptors=interceptors)
    stack.push_async_callback(history_channel.close)
    client = redis_client.connect(settings.common.redis_url)
    stack.push_async_callback(client.aclose)
    channels: dict[str, grpc.aio.Channel] = {}

    async def close_channels() -> None:
        for channel in channels.values():
            await channel.close()

    stack.push_async_callback(close_channels)
    routing = LiveSection("partitioning", Partitioning.parse)
    features = LiveSection("features", Features.parse)
    live = LiveConfig(settings.common.redis_url, [routing, features])
    stack.push_async_callback(live.close)
    await live.start(stop)
    backends = Backends(
        history=history_pb2_grpc.HistoryServiceStub(history_channel),
        redis=client,
        secret=settings.common.jwt_secret,
        verifier=tokens.Verifier(settings.common.jwt_secret),
        access_ttl=settings.access_ttl_seconds,
        refresh_ttl=settings.refresh_ttl_seconds,
        messaging_channels=channels,
        client_interceptors=interceptors,
        messaging_dial=settings.messaging_dial,
        partitioning=routing,
        features=features,
    )
    runner = web.AppRunner(create_app(backends, settings.max_request_bytes), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.host, settings.port).start()

    ops_runner = await ops.start(
        "127.0.0.1",
        settings.ops_port,
        {"redis": ops.redis_ping(client), "config": live.check},
        degraded={"config": live.problem},
    )
    stack.push_async_callback(ops_runner.cleanup)
    logger.info("bff on http://%s:%d", settings.host, settings.port)
    await stop.wait()


if __name__ == "__main__":
    sys.exit(main())
