"""Which messaging server the BFF calls for a user while the user's server is unreachable."""

from __future__ import annotations

import json
from typing import Any, cast

import grpc

from bff.routing import Backends
from chatlib.live_config import Document, LiveSection
from chatlib.ownership import OwnerView, Routing
from chatlib.partitioning import Partitioning
from chatlib.settings import Tls

State = grpc.ChannelConnectivity
PLACEMENT = {
    "partitions": 3,
    "servers": [
        {"name": f"m{n}", "address": f"grpc://127.0.0.1:710{n}", "ranges": [[n - 1, n - 1]]}
        for n in (1, 2, 3)
    ],
}


class Channel:
    """Stands in for a gRPC channel: only its connectivity is read."""

    def __init__(self, state: State) -> None:
        self.state = state

    def get_state(self, try_to_connect: bool = False) -> State:
        return self.state


def _backends(states: dict[str, State]) -> Backends:
    section = LiveSection("partitioning", Partitioning.parse)
    section.offer(Document("partitioning", 1, json.loads(json.dumps(PLACEMENT)), "test", ""))
    channels = {f"127.0.0.1:710{n}": Channel(states[f"m{n}"]) for n in (1, 2, 3)}
    return Backends(
        history=cast(Any, None),
        deadline=1.0,
        messaging_channels=cast(Any, channels),
        client_interceptors=[],
        messaging_dial={},
        routing=Routing(section, OwnerView(cast(Any, None))),
        tls=Tls(),
    )


def _user_on(backends: Backends, server: str) -> int:
    return next(u for u in range(1000) if backends.routing.owner_of_user(u)[1].name == server)


def test_the_owner_is_called_while_it_can_be_reached() -> None:
    backends = _backends({"m1": State.IDLE, "m2": State.READY, "m3": State.READY})
    target, _ = backends._owner(_user_on(backends, "m1"))
    assert target == "127.0.0.1:7101"


def test_an_unreachable_owner_gives_way_to_a_connected_server_first() -> None:
    failing = State.TRANSIENT_FAILURE
    backends = _backends({"m1": failing, "m2": State.CONNECTING, "m3": State.READY})
    target, _ = backends._owner(_user_on(backends, "m1"))
    assert target == "127.0.0.1:7103"
    backends = _backends({"m1": failing, "m2": State.IDLE, "m3": failing})
    target, _ = backends._owner(_user_on(backends, "m1"))
    assert target == "127.0.0.1:7102"
