"""``python -m bff``: the HTTP API for browsers and other HTTP clients."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import AsyncExitStack

import grpc
from aiohttp import web

from bff.app import create_app
from bff.live import Live
from bff.relay import Relays
from bff.routing import Backends
from bff.session_routes import Accounts
from bff.settings import Settings
from chatlib import channels, lifecycle, ops, redis_client, telemetry, tokens
from chatlib.config_sections import AuthLimits, Features, Sessions, Web
from chatlib.live_config import LiveConfig, LiveSection
from chatlib.ownership import OwnerView, Routing
from chatlib.partitioning import Partitioning
from chatlib.revocations import Revocations
from chatlib.sessions import SessionStore
from protos.chat.v1 import history_pb2_grpc

logger = logging.getLogger("bff")


def main() -> int:
    settings = Settings.from_env(os.environ)
    return lifecycle.serve("bff", settings.common, lambda stack, stop: _run(settings, stack, stop))


async def _run(settings: Settings, stack: AsyncExitStack, stop: asyncio.Event) -> None:
    telemetry.instrument_aiohttp_server()
    interceptors = telemetry.grpc_client_interceptors()
    history_channel = channels.to_service(
        settings.history_address, settings.common.tls, interceptors=interceptors
    )
    stack.push_async_callback(history_channel.close)
    client = redis_client.connect(settings.common.redis)
    stack.push_async_callback(client.aclose)
    messaging_channels: dict[str, grpc.aio.Channel] = {}

    async def close_channels() -> None:
        for channel in messaging_channels.values():
            await channel.close()

    stack.push_async_callback(close_channels)
    partitioning = LiveSection("partitioning", Partitioning.parse)
    features = LiveSection("features", Features.parse)
    auth = LiveSection("auth", AuthLimits.parse)
    sessions = LiveSection("sessions", Sessions.parse)
    browsers = LiveSection("web", Web.parse)
    live = LiveConfig(settings.common.redis, [partitioning, features, auth, sessions, browsers])
    stack.push_async_callback(live.close)
    await live.start(stop)
    owners = OwnerView(client)
    owners.follow_in_background(partitioning)
    stack.push_async_callback(owners.close)
    revoked = Revocations(settings.common.redis, f"bff:{os.getpid()}")
    stack.push_async_callback(revoked.close)
    await revoked.start(stop)
    history = history_pb2_grpc.HistoryServiceStub(history_channel)
    backends = Backends(
        history=history,
        deadline=settings.call_deadline_seconds,
        messaging_channels=messaging_channels,
        client_interceptors=interceptors,
        messaging_dial=settings.messaging_dial,
        routing=Routing(partitioning, owners),
        tls=settings.common.tls,
    )

    async def locate(user_id: int) -> str:
        address, _ = await backends.messaging_for(user_id)
        return address

    accounts = Accounts(
        history=history,
        redis=client,
        store=SessionStore(client),
        secret=settings.common.jwt_secret,
        verifier=tokens.Verifier(settings.common.jwt_secret, revoked),
        access_ttl=settings.access_ttl_seconds,
        refresh_ttl=settings.refresh_ttl_seconds,
        features=features,
        limits=auth,
        sessions=sessions,
        deadline=settings.call_deadline_seconds,
        locate=locate,
    )
    relays = Relays(backends.channel, accounts.service_metadata)
    stack.push_async_callback(relays.close)
    streams = Live(backends=backends, accounts=accounts, redis=client, web=browsers, relays=relays)
    app = create_app(backends, accounts, streams, settings.max_request_bytes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.host, settings.port).start()

    async def stopping() -> str | None:
        return "stopping: new requests belong elsewhere" if stop.is_set() else None

    ops_runner = await ops.start(
        settings.common.ops_host,
        settings.ops_port,
        {
            "redis": ops.redis_ping(client),
            "config": live.check,
            "revocations": revoked.check,
            "stopping": stopping,
        },
        degraded={"config": live.problem, "revocations": revoked.problem},
    )
    stack.push_async_callback(ops_runner.cleanup)
    logger.info("bff on http://%s:%d", settings.host, settings.port)
    await stop.wait()
    # A graceful stop: out of the balancer first (readiness fails, requests are still
    # served), then browsers are told to resume elsewhere, then the listener goes.
    await asyncio.sleep(settings.drain_seconds)
    await streams.drain()


if __name__ == "__main__":
    sys.exit(main())
