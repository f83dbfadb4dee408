"""Where the BFF sends a user's calls: the messaging server that owns their partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from chatlib import tokens
from chatlib.grpc_auth import bearer_metadata
from chatlib.hashing import partition_for
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from protos.chat.v1 import groups_pb2_grpc, history_pb2_grpc, messaging_pb2_grpc


@dataclass
class Backends:
    history: history_pb2_grpc.HistoryServiceAsyncStub
    #: Per-call deadline on every gRPC call the BFF makes (seconds): a backend that hangs
    #: is answered 504 instead of holding the client until its own timeout.
    deadline: float
    messaging_channels: dict[str, grpc.aio.Channel]
    client_interceptors: list[grpc.aio.ClientInterceptor]
    #: Server name to the address the BFF itself dials, where it differs from the address
    #: clients are given (containers, NAT).
    messaging_dial: dict[str, str]
    #: Live config: routing changes apply from the next request.
    partitioning: LiveSection[Partitioning]

    def call_options(self, request: web.Request) -> dict[str, Any]:
        """The keywords of a gRPC call made for ``request``: its bearer token, the deadline."""
        return {
            "metadata": bearer_metadata(tokens.bearer(request.headers.get("Authorization"))),
            "timeout": self.deadline,
        }

    async def messaging_for(
        self, user_id: int
    ) -> tuple[str, messaging_pb2_grpc.MessagingServiceAsyncStub]:
        """The messaging server that owns the user's partition: where their stream lives."""
        target, channel = self._owner(user_id)
        return target, messaging_pb2_grpc.MessagingServiceStub(channel)

    def groups_for(self, user_id: int) -> groups_pb2_grpc.GroupServiceAsyncStub:
        """Group changes, on the same server as the user's other calls (any server could
        take them)."""
        return groups_pb2_grpc.GroupServiceStub(self._owner(user_id)[1])

    def _owner(self, user_id: int) -> tuple[str, grpc.aio.Channel]:
        config = self.partitioning.get()
        owner = config.owner(partition_for(user_id, config.partitions))
        return owner.target, self._dial(self.messaging_dial.get(owner.name, owner.target))

    def channel(self, target: str) -> grpc.aio.Channel:
        """A channel to the messaging server clients know as ``target`` (what a Redirect
        event names), dialled at the address the BFF uses for it."""
        for server in self.partitioning.get().servers:
            if server.target == target:
                return self._dial(self.messaging_dial.get(server.name, target))
        return self._dial(target)

    def _dial(self, address: str) -> grpc.aio.Channel:
        channel = self.messaging_channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, interceptors=self.client_interceptors)
            self.messaging_channels[address] = channel
        return channel


BACKENDS = web.AppKey("backends", Backends)
