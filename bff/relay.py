"""The BFF's side of Relay: one gRPC call per messaging server carries every browser's stream.

A browser's stream is opened on the call to its user's server with the user's token and
cursor (``Relays.opener``, which ``clients.stream.follow`` drives exactly as it drives a
Subscribe: resume, redirects, retries while a server is away). The call's reader hands each
event to its stream's queue and never waits for a browser; a stream grants the server more
events as its browser takes them, so its queue here holds at most ``WINDOW`` events and a
browser that reads nothing holds back only its own stream.

When the call breaks (the server died, or stopped), every stream on it ends UNAVAILABLE after
the events it already has, and resumes from its cursor on a new call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
from prometheus_client import Gauge

from clients.stream import Interrupted, Opener, subscribe
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

logger = logging.getLogger(__name__)

#: Events a stream may have in flight (sent by the server, not yet taken by its browser).
WINDOW = 32
#: Credit goes back in steps of this many events taken, not one message per event.
GRANT_EVERY = WINDOW // 2

CALLS = Gauge("bff_relay_calls", "Relay calls open to messaging servers")
STREAMS = Gauge("bff_relay_streams", "Browser streams carried by Relay calls")
STATUS = {code.value[0]: code for code in grpc.StatusCode}
#: How long a server without Relay is given Subscribe calls before it is asked again.
ASK_AGAIN_SECONDS = 60.0


class _Stream:
    __slots__ = ("ended", "events", "wake")

    def __init__(self) -> None:
        self.events: deque[messaging_pb2.ClientEvent] = deque()
        self.ended: messaging_pb2.RelayEnded | None = None
        self.wake = asyncio.Event()


class Upstream:
    """One Relay call to one messaging server, and the streams open on it."""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._outbox: asyncio.Queue[messaging_pb2.RelayRequest] = asyncio.Queue()
        self._call = messaging_pb2_grpc.MessagingServiceStub(channel).Relay(
            self._requests(), metadata=metadata
        )
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count(1)
        #: Why the call ended; no stream is opened on it after that.
        self.broken: Interrupted | None = None
        self._reader = asyncio.create_task(self._read(), name="relay reader")
        CALLS.inc()

    async def _requests(self) -> AsyncIterator[messaging_pb2.RelayRequest]:
        # Nothing is written before the server has accepted the call (its initial metadata):
        # a write racing a refusal would turn the refusal's status into grpc's INTERNAL, and
        # UNIMPLEMENTED (a server without Relay) must be seen as what it is.
        await self._call.initial_metadata()
        if self._call.done():
            return
        while True:
            yield await self._outbox.get()

    async def _read(self) -> None:
        broken = Interrupted(grpc.StatusCode.UNAVAILABLE, "the messaging server ended the relay")
        try:
            async for batch in self._call:
                for item in batch.events:
                    stream = self._streams.get(item.stream_id)
                    if stream is None:
                        continue  # closed here meanwhile
                    if item.WhichOneof("item") == "event":
                        stream.events.append(item.event)
                    else:
                        stream.ended = item.ended
                        del self._streams[item.stream_id]
                    stream.wake.set()
        except grpc.aio.AioRpcError as exc:
            detail = f"the relay to the messaging server ended: {exc.code().name}: {exc.details()}"
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                logger.warning("%s", detail)
            # Whatever ended the call, its streams did nothing wrong: they resume from their
            # cursors on a new one (a server without Relay is given Subscribe calls instead).
            unimplemented = exc.code() == grpc.StatusCode.UNIMPLEMENTED
            code = grpc.StatusCode.UNIMPLEMENTED if unimplemented else grpc.StatusCode.UNAVAILABLE
            broken = Interrupted(code, detail)
        finally:
            self.broken = broken
            CALLS.dec()
            for stream in self._streams.values():
                stream.wake.set()
            self._streams.clear()

    async def stream(self, token: str, cursor: str) -> AsyncGenerator[messaging_pb2.ClientEvent]:
        """One user's events on this call; raises Interrupted as a Subscribe call would."""
        if self.broken is not None:
            raise self.broken
        stream_id = next(self._ids)
        stream = _Stream()
        self._streams[stream_id] = stream
        self._outbox.put_nowait(
            messaging_pb2.RelayRequest(
                open=messaging_pb2.RelayOpen(
                    stream_id=stream_id, access_token=token, resume_cursor=cursor, credit=WINDOW
                )
            )
        )
        STREAMS.inc()
        taken = 0
        try:
            while True:
                while stream.events:
                    event = stream.events.popleft()
                    taken += 1
                    if taken == GRANT_EVERY:
                        self._grant(stream_id, taken)
                        taken = 0
                    yield event
                ended = stream.ended
                if ended is not None:
                    if ended.code:
                        code = STATUS.get(ended.code, grpc.StatusCode.UNKNOWN)
                        raise Interrupted(code, ended.detail, ended.redirect)
                    return
                if self.broken is not None:
                    raise self.broken
                stream.wake.clear()
                await stream.wake.wait()
        finally:
            STREAMS.dec()
            if self._streams.pop(stream_id, None) is not None:
                close = messaging_pb2.RelayClose(stream_id=stream_id)
                self._outbox.put_nowait(messaging_pb2.RelayRequest(close=close))

    def _grant(self, stream_id: int, events: int) -> None:
        credit = messaging_pb2.RelayCredit(stream_id=stream_id, events=events)
        self._outbox.put_nowait(messaging_pb2.RelayRequest(credit=credit))

    async def close(self) -> None:
        self._call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Relays:
    """The Relay calls of this BFF, one per messaging server, opened when first needed and
    again after one breaks."""

    def __init__(
        self,
        channel_for: Callable[[str], grpc.aio.Channel],
        metadata: Callable[[], tuple[tuple[str, str], ...]],
    ) -> None:
        self._channel_for = channel_for
        self._metadata = metadata
        self._calls: dict[str, Upstream] = {}
        #: Servers that answered Relay UNIMPLEMENTED, until when they are not asked again.
        self._without_relay: dict[str, float] = {}

    def opener(self, token: str) -> Opener:
        """How ``clients.stream.follow`` opens this user's stream at a server: on its relay,
        or as a Subscribe of its own at a server that has no Relay yet (an older version,
        during a rolling upgrade)."""

        async def opened(address: str, cursor: str) -> AsyncGenerator[messaging_pb2.ClientEvent]:
            if self._without_relay.get(address, 0.0) < time.monotonic():
                try:
                    async with contextlib.aclosing(
                        self._upstream(address).stream(token, cursor)
                    ) as relayed:
                        async for event in relayed:
                            yield event
                    return
                except Interrupted as exc:
                    if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    # Refused at the call's start, before any event: nothing is repeated.
                    self._without_relay[address] = time.monotonic() + ASK_AGAIN_SECONDS
            async with contextlib.aclosing(
                subscribe(token, self._channel_for)(address, cursor)
            ) as own:
                async for event in own:
                    yield event

        return opened

    def _upstream(self, address: str) -> Upstream:
        call = self._calls.get(address)
        if call is None or call.broken is not None:
            call = Upstream(self._channel_for(address), self._metadata())
            self._calls[address] = call
        return call

    async def close(self) -> None:
        for call in self._calls.values():
            await call.close()
        self._calls.clear()
