"""The stream client (``clients/stream.py``) against a real gRPC server that ends its calls
the ways a messaging server does when it stops: it resumes from its cursor, losing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from clients.stream import StreamState, events
from protos.chat.v1 import common_pb2, messaging_pb2


class Stopping:
    """Answers the first Subscribe with one message, then ends it with ``ending``; the next
    one with a message after the cursor it was given."""

    def __init__(self, ending: grpc.StatusCode) -> None:
        self.ending = ending
        self.cursors: list[str] = []

    async def Subscribe(  # noqa: N802 (the gRPC method's name)
        self,
        request: messaging_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[messaging_pb2.ClientEvent]:
        self.cursors.append(request.resume_cursor)
        number = len(self.cursors)
        yield messaging_pb2.ClientEvent(
            cursor=f"c{number}", message=common_pb2.Message(message_id=number)
        )
        if number == 1:
            await context.abort(self.ending, "the server is stopping")


async def _resumes_after(ending: grpc.StatusCode) -> list[str]:
    servicer = Stopping(ending)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "chat.v1.MessagingService",
                {
                    "Subscribe": grpc.unary_stream_rpc_method_handler(
                        servicer.Subscribe,
                        request_deserializer=messaging_pb2.SubscribeRequest.FromString,
                        response_serializer=messaging_pb2.ClientEvent.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        got = []
        async for event in events(StreamState(f"127.0.0.1:{port}"), "token", lambda _: channel):
            got.append(event.message.message_id)
            if len(got) == 2:
                break
        assert got == [1, 2]
        return servicer.cursors
    finally:
        await channel.close()
        await server.stop(None)


async def test_a_stream_the_server_cancels_resumes_from_its_cursor() -> None:
    # What a client sees of a server whose stop ran out of grace with the stream still open.
    assert await asyncio.wait_for(_resumes_after(grpc.StatusCode.CANCELLED), 20) == ["", "c1"]


async def test_a_stream_the_server_refuses_for_now_resumes_from_its_cursor() -> None:
    assert await asyncio.wait_for(_resumes_after(grpc.StatusCode.UNAVAILABLE), 20) == ["", "c1"]
