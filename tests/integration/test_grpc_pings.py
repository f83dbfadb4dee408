"""Our gRPC servers accept the pings our channels send.

A channel between services pings every 2 s, calls or none, to find out a frozen server
(chatlib/channels.py). A gRPC server that does not allow that answers the third ping on an idle
connection with GOAWAY "too_many_pings" and drops it, and a call made just then fails."""

from __future__ import annotations

import asyncio

import grpc

from chatlib import channels
from chatlib.settings import Tls

QUIET_S = 8.0  # four of the channel's 2 s pings


async def _echo(request: bytes, context: object) -> bytes:
    return request


async def test_an_idle_connection_outlives_the_channel_pings() -> None:
    server = grpc.aio.server(options=channels.SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Quiet",
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(
                        _echo,
                        request_deserializer=bytes,
                        response_serializer=bytes,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = channels.to_service(f"127.0.0.1:{port}", Tls())
    try:
        echo = channel.unary_unary(
            "/test.Quiet/Echo", request_serializer=bytes, response_deserializer=bytes
        )
        assert await echo(b"one") == b"one"
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        # A dropped connection is a change of state while nothing is called.
        changed = asyncio.create_task(channel.wait_for_state_change(grpc.ChannelConnectivity.READY))
        await asyncio.wait({changed}, timeout=QUIET_S)
        assert not changed.done(), f"the idle connection was dropped: {channel.get_state()}"
        changed.cancel()
        assert await echo(b"two") == b"two"
    finally:
        await channel.close()
        await server.stop(None)
