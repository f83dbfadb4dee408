"""Where the BFF sends a user's calls: the messaging server that owns their partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from chatlib import channels, tokens
from chatlib.grpc_auth import bearer_metadata
from chatlib.ownership import Routing
from chatlib.settings import Tls
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
    #: Partition leases over the live config: routing changes apply from the next request.
    routing: Routing
    #: How the BFF dials messaging servers (TLS in the cluster).
    tls: Tls

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
        _, owner = self.routing.owner_of_user(user_id)
        channel = self._dial(self.messaging_dial.get(owner.name, owner.target))
        if channel.get_state() != grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            return owner.target, channel
        # The owner cannot be reached (it died, and its partitions have not moved yet): any
        # server takes the user's calls, and a stream is redirected once they have moved. One
        # already connected first, then one that is not known to be failing.
        others = [
            (server.target, self._dial(self.messaging_dial.get(server.name, server.target)))
            for server in self.routing.partitioning.get().servers
        ]
        for wanted in (grpc.ChannelConnectivity.READY, None):
            for target, other in others:
                state = other.get_state()
                if state == wanted or (
                    wanted is None and state != grpc.ChannelConnectivity.TRANSIENT_FAILURE
                ):
                    return target, other
        return owner.target, channel

    def channel(self, target: str) -> grpc.aio.Channel:
        """A channel to the messaging server clients know as ``target`` (what a Redirect
        event names), dialled at the address the BFF uses for it."""
        for server in self.routing.partitioning.get().servers:
            if server.target == target:
                return self._dial(self.messaging_dial.get(server.name, target))
        return self._dial(target)

    def _dial(self, address: str) -> grpc.aio.Channel:
        channel = self.messaging_channels.get(address)
        if channel is None:
            channel = channels.to_service(address, self.tls, interceptors=self.client_interceptors)
            self.messaging_channels[address] = channel
        return channel


BACKENDS = web.AppKey("backends", Backends)
