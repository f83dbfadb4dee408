"""A messaging server of an older version has no Relay (a rolling upgrade, BFFs first): the BFF
carries its browsers' streams to it as Subscribe calls of their own, and nothing else changes
for them. The server here is a real gRPC server that implements Subscribe only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from bff.relay import Relays
from clients.stream import StreamState, follow
from protos.chat.v1 import messaging_pb2


class SubscribeOnly:
    """A messaging service that knows Subscribe and nothing else."""

    def __init__(self) -> None:
        self.cursors: list[str] = []

    async def subscribe(
        self, request: messaging_pb2.SubscribeRequest, _: object
    ) -> AsyncIterator[messaging_pb2.ClientEvent]:
        self.cursors.append(request.resume_cursor)
        yield messaging_pb2.ClientEvent(cursor="0:7", caught_up=messaging_pb2.CaughtUp())
        await asyncio.Event().wait()  # live from here; nothing more comes

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_stream_rpc_method_handler(
            self.subscribe,
            request_deserializer=messaging_pb2.SubscribeRequest.FromString,
            response_serializer=messaging_pb2.ClientEvent.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "chat.v1.MessagingService", {"Subscribe": method}
        )


async def test_a_server_without_relay_is_given_subscribe_calls() -> None:
    old = SubscribeOnly()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((old.handler(),))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    channel = grpc.aio.insecure_channel(address)
    relays = Relays(lambda _: channel, lambda: (("authorization", "Bearer service"),))
    try:
        for cursor in ("0:3", "0:7"):  # the second is opened without asking for a relay
            state = StreamState(address=address, cursor=cursor)
            async with contextlib.aclosing(follow(state, relays.opener("user"))) as events:
                first = await asyncio.wait_for(anext(events), 10)
            assert first.WhichOneof("event") == "caught_up"
            assert state.cursor == "0:7"
        assert old.cursors == ["0:3", "0:7"]
    finally:
        await relays.close()
        await channel.close()
        await server.stop(None)
