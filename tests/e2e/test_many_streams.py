"""A burst of subscribes (a reconnect storm after a restart) is served, not cut off."""

from __future__ import annotations

import asyncio

import grpc

from chatlib import tokens
from chatlib.hashing import partition_for
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc
from tests.e2e.conftest import jwt_secret

STREAMS = 2000
SERVER = "127.0.0.1:7101"  # owns partitions 0-5 of 12 (infra/catalog.py)


async def test_two_thousand_streams_opened_at_once_all_catch_up() -> None:
    secret = jwt_secret()
    users = [u for u in range(10**15, 10**15 + 4 * STREAMS) if partition_for(u, 12) < 6][:STREAMS]
    async with grpc.aio.insecure_channel(SERVER) as channel:
        stub = messaging_pb2_grpc.MessagingServiceStub(channel)
        calls = [
            stub.Subscribe(
                messaging_pb2.SubscribeRequest(),
                metadata=(("authorization", f"Bearer {tokens.issue(secret, str(u), 300)}"),),
            )
            for u in users
        ]
        try:
            firsts = await asyncio.wait_for(asyncio.gather(*(c.read() for c in calls)), 120)
        finally:
            for call in calls:
                call.cancel()
    kinds = [
        event.WhichOneof("event") if isinstance(event, messaging_pb2.ClientEvent) else event
        for event in firsts
    ]
    assert kinds == ["caught_up"] * STREAMS
