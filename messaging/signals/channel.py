"""Ephemeral events (typing, presence) between messaging servers, over Redis pub/sub.

A user's live streams are all on the server that owns their partition, so an event for some
users is published once per owning server, on that server's channel, with the recipients in
it; each server follows its own channel and hands the event to the recipients' streams. Such
events are never in Kafka or Cassandra: one published while a partition moves, or while a
server is not listening, is lost, which an ephemeral event may be (typing expires, presence
can be asked for).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from chatlib.ownership import Routing
from chatlib.settings import RedisAccess
from chatlib.subscription import ChannelFollower
from messaging.streams.registry import LiveEvent, StreamRegistry
from protos.chat.v1 import envelope_pb2, messaging_pb2

logger = logging.getLogger(__name__)
CONNECTED = Gauge("messaging_signals_subscribed", "1 while this server follows its signal channel")
SIGNALS = Counter("messaging_signals_total", "Ephemeral events", ["direction"])
SIGNALS_OUT, SIGNALS_IN = (
    SIGNALS.labels(direction="published"),
    SIGNALS.labels(direction="received"),
)


def channel(server: str) -> str:
    return f"chat:signals:{server}"


class Signals(ChannelFollower):
    def __init__(
        self,
        access: RedisAccess,
        server_name: str,
        redis: aioredis.Redis,
        routing: Routing,
        registry: StreamRegistry,
    ) -> None:
        super().__init__(access, channel(server_name), CONNECTED)
        self._redis = redis
        self._routing = routing
        self._registry = registry

    async def send(self, recipients: Iterable[int], event: messaging_pb2.ClientEvent) -> None:
        """Publish ``event`` to the servers holding the recipients' streams (best effort)."""
        by_server: dict[str, list[int]] = defaultdict(list)
        for user in recipients:
            by_server[self._routing.owner_of_user(user)[1].name].append(user)
        if not by_server:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for server, users in by_server.items():
                    signal = envelope_pb2.Signal(recipient_ids=users, event=event)
                    pipe.publish(channel(server), signal.SerializeToString())
                await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("an ephemeral event was not published: %s", exc)
            return
        SIGNALS_OUT.inc(len(by_server))

    async def snapshot(self) -> None:
        """Nothing to catch up on: what was missed while not subscribed is gone."""

    async def announced(self, raw: bytes) -> None:
        try:
            signal = envelope_pb2.Signal.FromString(raw)
        except ValueError:
            logger.warning("an undecodable signal was dropped")
            return
        SIGNALS_IN.inc()
        event = LiveEvent(None, 0, signal.event)
        for user in signal.recipient_ids:
            self._registry.publish(user, event)

    def describe_loss(self, lost_for: float, reason: str) -> str:
        return f"typing and presence events are not received ({lost_for:.0f} s: {reason})"
