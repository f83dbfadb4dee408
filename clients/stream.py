"""The client side of a live stream, as every client should hold it: resume from the last
cursor whenever the stream ends, follow redirects when the user's partition moves, and retry
while the new owner is still taking the partition over.

Used by the terminal client, the benchmarks and the tests, so they all exercise the protocol
the way a mobile client is meant to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from chatlib.errors import REDIRECT_KEY
from protos.chat.v1 import messaging_pb2, messaging_pb2_grpc

RETRY_PAUSE = 0.05
MAX_RETRY_PAUSE = 2.0
#: Channel options for a client's messaging channel: a ping every 10 s when nothing else
#: arrives, and a server that does not answer one within 5 s is given up on (UNAVAILABLE, so
#: the stream moves on). Without them a frozen server holds a stream open and silent for as
#: long as it stays frozen.
KEEPALIVE = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # The wait for any ping's answer (60 s by default), which bounds the one above.
    ("grpc.http2.ping_timeout_ms", 5_000),
    # A connection attempt to a frozen server (its kernel still accepts) fails after 2 s
    # instead of 20 s, so the call fails over rather than waits.
    ("grpc.min_reconnect_backoff_ms", 2_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def dial(target: str, *, tls: bool, ca: bytes | None = None) -> grpc.aio.Channel:
    """A client's channel to a messaging server. With ``tls`` the server's certificate is
    verified against ``ca`` (a deployment's own CA, PEM), or against the system's roots when
    ``ca`` is None; a server whose certificate does not verify, or does not name ``target``'s
    host, is never talked to."""
    if not tls:
        return grpc.aio.insecure_channel(target, options=KEEPALIVE)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.aio.secure_channel(target, credentials, options=KEEPALIVE)


#: UNAVAILABLE answers in a row (about 0.15 s of retries) before another server is asked.
DISCOVER_AFTER = 2


@dataclass
class StreamState:
    """Where the stream is: the server to dial and the last cursor seen."""

    address: str
    cursor: str = ""
    #: Servers a Redirect event sent the stream to, in order.
    redirects: list[str] = field(default_factory=list)
    #: Subscribes refused (FAILED_PRECONDITION) by a server that does not own the partition.
    refusals: int = 0
    #: Subscribes retried after UNAVAILABLE (the partition was still moving).
    retries: int = 0


class Interrupted(Exception):
    """A stream ended with a status other than OK: its code, its message, and the address a
    FAILED_PRECONDITION refusal names (empty otherwise)."""

    def __init__(self, code: grpc.StatusCode, detail: str, redirect: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.redirect = redirect


#: Opens the user's stream at a server (its address) from a cursor; raises Interrupted.
Opener = Callable[[str, str], AsyncGenerator[messaging_pb2.ClientEvent]]


def subscribe(token: str, channel_for: Callable[[str], grpc.aio.Channel]) -> Opener:
    """Streams as Subscribe calls of their own, with the user's token."""
    metadata = (("authorization", f"Bearer {token}"),)

    async def opened(address: str, cursor: str) -> AsyncGenerator[messaging_pb2.ClientEvent]:
        call = messaging_pb2_grpc.MessagingServiceStub(channel_for(address)).Subscribe(
            messaging_pb2.SubscribeRequest(resume_cursor=cursor), metadata=metadata
        )
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            redirect = dict(exc.trailing_metadata() or ()).get(REDIRECT_KEY)
            detail = exc.details() or exc.code().name
            raise Interrupted(exc.code(), detail, str(redirect or "")) from exc
        finally:
            call.cancel()

    return opened


async def events(
    state: StreamState,
    token: str,
    channel_for: Callable[[str], grpc.aio.Channel],
    discover: Callable[[], Awaitable[str]] | None = None,
) -> AsyncIterator[messaging_pb2.ClientEvent]:
    """``follow`` over Subscribe calls; a call that ends for good raises its AioRpcError."""
    try:
        async for event in follow(state, subscribe(token, channel_for), discover):
            yield event
    except Interrupted as exc:
        if isinstance(exc.__cause__, grpc.aio.AioRpcError):
            raise exc.__cause__ from None
        raise


async def follow(
    state: StreamState,
    open_stream: Opener,
    discover: Callable[[], Awaitable[str]] | None = None,
) -> AsyncGenerator[messaging_pb2.ClientEvent]:
    """Every event of the user's stream, across reconnects, until the caller stops.

    Redirect events are yielded too (after which the stream continues on the new server).
    An Interrupted other than a refusal with a redirect, UNAVAILABLE or a server's CANCELLED
    is raised. While the server stays UNAVAILABLE (it died, or is stopping), ``discover``
    names another one to ask: any server refuses with a redirect to the user's current one.
    """
    failures = 0
    while True:
        try:
            async with contextlib.aclosing(open_stream(state.address, state.cursor)) as stream:
                async for event in stream:
                    failures = 0
                    state.cursor = event.cursor or state.cursor
                    yield event
                    if event.WhichOneof("event") == "redirect":
                        state.redirects.append(event.redirect.server)
                        state.address = event.redirect.address
                        break
        except Interrupted as exc:
            if exc.code == grpc.StatusCode.FAILED_PRECONDITION and exc.redirect:
                state.refusals += 1
                state.address = exc.redirect
            elif exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                # (CANCELLED here is the server's doing, a stop whose grace ran out: one this
                # side cancelled ends the loop with asyncio.CancelledError instead.)
                # Quick while a partition is changing hands; backing off to 2 s while the
                # server stays away, so thousands of held streams do not hammer it.
                state.retries += 1
                await asyncio.sleep(min(MAX_RETRY_PAUSE, RETRY_PAUSE * 2**failures))
                failures += 1
                if discover is not None and failures >= DISCOVER_AFTER:
                    state.address = await discover()
            else:
                raise
