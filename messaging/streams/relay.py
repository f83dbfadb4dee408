"""One Relay call: many users' live streams between a BFF and this server, over one gRPC call.

A browser's stream used to be a Subscribe call of its own, so a BFF held one gRPC call (and
its buffers, on both sides) per browser. Over a Relay each stream is opened with its user's
token and cursor, runs exactly the code of a Subscribe (``MessagingService.live_events``), and
its events go out tagged with its id, batched with whatever else is ready for the call.

Flow control is per stream, by credit: a stream sends at most the events the BFF has granted,
and waits for more. The BFF grants them as its browser takes events, so a browser that reads
nothing holds back only its own stream, whose events then wait in its bounded LiveStream queue
here (which overflows into a ResumeRequired, as for a Subscribe), while the call itself keeps
moving for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
from prometheus_client import Gauge

from chatlib import errors
from protos.chat.v1 import messaging_pb2

logger = logging.getLogger(__name__)

CALLS = Gauge("messaging_relay_calls", "Relay calls open (one per BFF, per server)")
RELAYED = Gauge("messaging_relay_streams", "Live streams carried by Relay calls")

#: Opens one user's stream from their access token and cursor (``live_events``).
Opener = Callable[[str, str], AsyncGenerator[messaging_pb2.ClientEvent]]


class _Stream:
    __slots__ = ("credit", "more", "task")

    def __init__(self, credit: int) -> None:
        self.credit = credit
        self.more = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class RelayCall:
    def __init__(self, opener: Opener) -> None:
        self._open = opener
        self._streams: dict[int, _Stream] = {}
        #: What the next write carries; filled by the streams, swapped out by ``serve``.
        self._batch = messaging_pb2.RelayBatch()
        self._ready = asyncio.Event()
        self._done = False
        self._refused: errors.ChatError | None = None

    async def batches(
        self, requests: AsyncIterator[messaging_pb2.RelayRequest]
    ) -> AsyncGenerator[messaging_pb2.RelayBatch]:
        """Read the BFF's requests and yield the streams' events, batched, until the BFF ends
        the call; then every stream still open ends (its registration goes with it)."""
        CALLS.inc()
        reader = asyncio.create_task(self._read(requests), name="relay reader")
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                if self._batch.events:
                    batch, self._batch = self._batch, messaging_pb2.RelayBatch()
                    yield batch
                if self._done:
                    break
            if self._refused is not None:
                raise self._refused
        finally:
            CALLS.dec()
            reader.cancel()
            streams = [s.task for s in self._streams.values() if s.task is not None]
            self._streams.clear()
            for task in streams:
                task.cancel()
            for task in [reader, *streams]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self, requests: AsyncIterator[messaging_pb2.RelayRequest]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "open":
                    self._start(request.open)
                elif kind == "credit":
                    stream = self._streams.get(request.credit.stream_id)
                    if stream is not None:
                        stream.credit += request.credit.events
                        stream.more.set()
                elif kind == "close":
                    gone = self._streams.pop(request.close.stream_id, None)
                    if gone is not None and gone.task is not None:
                        gone.task.cancel()
        except errors.ChatError as exc:
            self._refused = exc
        finally:
            self._done = True
            self._ready.set()

    def _start(self, opened: messaging_pb2.RelayOpen) -> None:
        if opened.stream_id in self._streams:
            raise errors.InvalidArgument(
                f"stream_id {opened.stream_id} is already open on this call; ids are unique"
            )
        if opened.credit < 1:
            raise errors.InvalidArgument(f"stream {opened.stream_id}: credit must be at least 1")
        stream = _Stream(opened.credit)
        self._streams[opened.stream_id] = stream
        stream.task = asyncio.create_task(
            self._forward(opened.stream_id, stream, opened.access_token, opened.resume_cursor),
            name="relayed stream",
        )

    async def _forward(self, stream_id: int, stream: _Stream, token: str, cursor: str) -> None:
        ended = messaging_pb2.RelayEnded()
        RELAYED.inc()
        try:
            async with contextlib.aclosing(self._open(token, cursor)) as events:
                async for event in events:
                    while stream.credit <= 0:
                        stream.more.clear()
                        await stream.more.wait()
                    stream.credit -= 1
                    self._batch.events.add(stream_id=stream_id, event=event)
                    self._ready.set()
        except errors.ChatError as exc:
            ended.code = exc.code.value[0]
            ended.detail = str(exc)
            ended.redirect = dict(exc.metadata).get(errors.REDIRECT_KEY, "")
        except Exception:
            logger.exception("a relayed stream failed")
            ended.code = grpc.StatusCode.INTERNAL.value[0]
            ended.detail = "the stream failed; open it again with the last cursor"
        finally:
            RELAYED.dec()
        if self._streams.pop(stream_id, None) is not None:
            self._batch.events.add(stream_id=stream_id, ended=ended)
            self._ready.set()
