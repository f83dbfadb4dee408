"""The client side of a live stream, as every client should hold it: resume from the last
cursor whenever the stream ends, follow redirects when the user's partition moves, and retry
while the new owner is still taking the partition over.

Used by the terminal client, the benchmarks and the tests, so they all exercise the protocol
the way a mobile client is meant to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def events(
    state: StreamState,
    token: str,
    channel_for: Callable[[str], grpc.aio.Channel],
    discover: Callable[[], Awaitable[str]] | None = None,
) -> AsyncIterator[messaging_pb2.ClientEvent]:
    """Every event of the caller's stream, across reconnects, until the caller stops.

    Redirect events are yielded too (after which the stream continues on the new server).
    Errors other than a refusal with a redirect, UNAVAILABLE or a server's CANCELLED are
    raised. While the server stays UNAVAILABLE (it died, or is stopping), ``discover`` names
    another one to ask: any server refuses with a redirect to the user's current one.
    """
    metadata = (("authorization", f"Bearer {token}"),)
    failures = 0
    while True:
        call = messaging_pb2_grpc.MessagingServiceStub(channel_for(state.address)).Subscribe(
            messaging_pb2.SubscribeRequest(resume_cursor=state.cursor), metadata=metadata
        )
        try:
            async for event in call:
                failures = 0
                state.cursor = event.cursor or state.cursor
                yield event
                if event.WhichOneof("event") == "redirect":
                    state.redirects.append(event.redirect.server)
                    state.address = event.redirect.address
                    break
        except grpc.aio.AioRpcError as exc:
            redirect = dict(exc.trailing_metadata() or ()).get(REDIRECT_KEY)
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and redirect:
                state.refusals += 1
                state.address = str(redirect)
            elif exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
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
        finally:
            call.cancel()
