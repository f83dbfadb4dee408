"""The live stream for browsers: the user's live stream, bridged to a WebSocket (or to
Server-Sent Events where a WebSocket cannot be held), with exactly the semantics of Subscribe.
It is carried over the BFF's one Relay call to the user's messaging server (``bff/relay.py``),
not a gRPC call per browser.

- Every event carries the cursor of the gRPC event; reconnecting with the last one yields
  every missed event once, then ``caught_up``, then live events; too old a cursor yields
  ``resync_required``. The BFF follows partition moves itself (``clients/stream.py``):
  a Redirect never reaches the browser and its stream does not drop.
- No token in a URL: the WebSocket authenticates in its first frame
  (``{"type": "hello", "access_token": ..., "cursor": ...}``); SSE takes a single-use ticket
  (``POST /v1/stream/tickets`` with the bearer token, valid 30 s) and the cursor from
  ``Last-Event-ID`` (or ``?cursor=``, since a new EventSource cannot set headers).
- A browser that does not read is cut loose: one that took nothing for 5 s while events
  wait is ended (a WebSocket with code 4000 and ``resume <cursor>``, the last event handed
  to it; an SSE response simply ends, the browser knows its last event id). Until then the
  events wait in messaging's bounded stream queue (the stream's Relay credit holds them
  there), so memory per connection stays bounded and no one else waits.
- When the session ends (logout, kick) or its token expires, messaging ends the stream
  with UNAUTHENTICATED; the browser gets an ``error`` event and the connection ends (WebSocket
  code 4401).
- Sends may go over the WebSocket too (``{"type": "send", "request_id", "chat_id",
  "client_message_id", "body"}``), checked as the HTTP route checks them, with the same
  idempotency key; each is answered ``sent`` or ``send_failed`` with its ``request_id``.
- Heartbeats (WebSocket ping, SSE comment) every ``web.heartbeat_seconds``; the ``Origin`` of
  a browser must be the BFF's own or one in ``web.allowed_origins`` (live config).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as aioredis
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import Counter, Gauge

from bff import chat_routes, inputs, views
from bff.relay import Relays
from bff.routing import Backends
from bff.session_routes import Accounts
from chatlib import errors, problems, tokens
from chatlib.config_sections import Web
from chatlib.grpc_auth import bearer_metadata
from chatlib.live_config import LiveSection
from clients.stream import Interrupted, StreamState, follow

logger = logging.getLogger(__name__)

TICKET = "chat:stream-ticket:{}"
TICKET_SECONDS = 30
HELLO_SECONDS = 10.0
#: The largest frame a browser may send (a send's body is limited far below this).
MAX_FRAME_BYTES = 64 * 1024
#: Seconds a browser may take nothing while events wait before it is cut loose.
STALL_SECONDS = 5.0
#: Sends in flight on one WebSocket; more wait for one to finish.
SENDS_IN_FLIGHT = 16

CLOSE_RESUME = 4000  # too slow: reconnect with the cursor in the close reason
CLOSE_BAD_FRAME = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SERVER_ERROR = 4500  # reconnect with the last cursor

CONNECTED = Gauge("bff_live_connections", "Browser streams open", ["transport"])
CUT_LOOSE = Counter("bff_live_cut_loose_total", "Browser streams ended for not reading")
for _transport in ("websocket", "sse"):
    CONNECTED.labels(transport=_transport)


@dataclass
class Live:
    backends: Backends
    accounts: Accounts
    redis: aioredis.Redis
    web: LiveSection[Web]
    #: The Relay calls every browser's stream is carried over (one per messaging server).
    relays: Relays
    #: Set when the BFF stops: every socket is closed with a resume hint (its last cursor),
    #: so browsers reconnect (through the load balancer, to another BFF) and miss nothing.
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    sockets: set[Socket] = field(default_factory=set)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    async def drain(self, seconds: float = 5.0) -> None:
        """Close every socket with its resume hint, waiting at most ``seconds``."""
        self.draining.set()
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), seconds)

    def forget(self, socket: Socket) -> None:
        self.sockets.discard(socket)
        if self.draining.is_set() and not self.sockets:
            self.drained.set()


LIVE = web.AppKey("live", Live)


def add_routes(app: web.Application, live: Live) -> None:
    app[LIVE] = live
    app.router.add_get("/v1/stream/ws", websocket)
    app.router.add_post("/v1/stream/tickets", ticket)
    app.router.add_get("/v1/stream/sse", server_sent_events)


class Ended(Exception):
    """The gRPC stream ended for good; ``code`` and the message say why."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code


async def browser_events(
    live: Live, token: str, user_id: int, cursor: str
) -> AsyncIterator[dict[str, Any]]:
    """The user's events as browser JSON, across partition moves, until the stream ends.

    Raises Ended when messaging ends it (the session ended, the token expired, a cursor it
    refuses); a Redirect is followed here and never yielded, and so is the second
    ``caught_up`` a move brings."""

    async def locate() -> str:
        return (await live.backends.messaging_for(user_id))[0]

    state = StreamState(address=await locate(), cursor=cursor)
    caught_up = False
    try:
        async for event in follow(state, live.relays.opener(token), locate):
            view = views.event(event)
            if view is None or (view["type"] == "caught_up" and caught_up):
                continue
            caught_up = caught_up or view["type"] == "caught_up"
            yield view
    except Interrupted as exc:
        raise Ended(exc.code, exc.detail) from None


def _allowed(request: web.Request, live: Live) -> None:
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser page: nothing to check
    own = f"{_scheme(request)}://{request.host}"
    if origin == own or origin in live.web.get().allowed_origins:
        return
    raise errors.PermissionDenied(
        f"origin {origin[:100]!r} may not open a stream here (live config web.allowed_origins)"
    )


def _scheme(request: web.Request) -> str:
    """How the page reached us: a balancer that ended TLS says so in X-Forwarded-Proto (it
    sets the header, replacing any the client sent). A page's script cannot set the header,
    so trusting it cannot let another site's page pass as ours."""
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return forwarded if forwarded in ("http", "https") else request.scheme


# --- WebSocket ---------------------------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE]
    _allowed(request, live)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        response = problems.problem(
            426, "upgrade required", "open a WebSocket here (Upgrade: websocket)"
        )
        response.headers["Upgrade"] = "websocket"
        return response
    ws = web.WebSocketResponse(
        heartbeat=live.web.get().heartbeat_seconds, max_msg_size=MAX_FRAME_BYTES
    )
    await ws.prepare(request)
    CONNECTED.labels(transport="websocket").inc()
    try:
        hello = await _hello(ws, live)
        if hello is not None:
            claims, token, cursor = hello
            await _serve(Socket(ws, live, claims, token), cursor)
    finally:
        CONNECTED.labels(transport="websocket").dec()
        if not ws.closed:
            await ws.close()
    return ws


async def _hello(ws: web.WebSocketResponse, live: Live) -> tuple[tokens.Claims, str, str] | None:
    """The first frame: who this is and where to resume. None if the socket was closed."""
    try:
        frame = await ws.receive(timeout=HELLO_SECONDS)
    except TimeoutError:
        await _refuse(ws, CLOSE_UNAUTHENTICATED, 'send {"type": "hello", ...} first')
        return None
    if frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None  # gone before saying hello
    if frame.type != WSMsgType.TEXT:
        await _refuse(ws, CLOSE_BAD_FRAME, "the first frame must be a JSON hello")
        return None
    try:
        body = _frame(frame.data)
        if body.get("type") != "hello":
            raise errors.InvalidArgument('the first frame must be {"type": "hello", ...}')
        token = inputs.text(body, "access_token", minimum=1, maximum=4096)
        cursor = inputs.text(body, "cursor", maximum=64) if "cursor" in body else ""
    except errors.ChatError as exc:
        await _refuse(ws, CLOSE_BAD_FRAME, str(exc))
        return None
    try:
        claims = live.accounts.verifier.verify_user(token)
    except tokens.InvalidToken as exc:
        await _refuse(ws, CLOSE_UNAUTHENTICATED, str(exc))
        return None
    return claims, token, cursor


async def _refuse(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    await _tell(ws, {"type": "error", "detail": reason})
    await _close_soon(ws, code, reason)


@dataclass(eq=False)
class Socket:
    """One browser's WebSocket past its hello."""

    ws: web.WebSocketResponse
    live: Live
    claims: tokens.Claims
    token: str
    #: The cursor of the last event sent: where the browser resumes.
    last: str = ""


async def _serve(socket: Socket, cursor: str) -> None:
    """Events out and sends in, until either side ends; then one close, from here (a close
    while another task is reading the socket would race it)."""
    ws = socket.ws
    socket.last = cursor
    socket.live.sockets.add(socket)
    pump = asyncio.create_task(_pump(socket, cursor))
    reader = asyncio.create_task(_read(socket))
    draining = asyncio.create_task(socket.live.draining.wait())
    try:
        done, _ = await asyncio.wait({pump, reader, draining}, return_when=asyncio.FIRST_COMPLETED)
        outcome: Close = None
        if draining in done:
            outcome = (CLOSE_RESUME, f"resume {socket.last}")
        else:
            first = pump if pump in done else reader
            if first.exception() is None:
                outcome = first.result()
            elif not isinstance(first.exception(), ConnectionError):  # a browser gone: no news
                logger.warning("a browser stream failed: %r", first.exception())
                outcome = (CLOSE_SERVER_ERROR, "the stream failed; reconnect with your cursor")
        for task in (pump, reader, draining):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        if outcome is not None and not ws.closed:
            await _close_soon(ws, *outcome)
    finally:
        socket.live.forget(socket)


Close = tuple[int, str] | None


async def _read(socket: Socket) -> Close:
    ws = socket.ws
    sends = asyncio.Semaphore(SENDS_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    try:
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                await _tell(ws, {"type": "error", "detail": "frames are JSON text"})
                return CLOSE_BAD_FRAME, "frames are JSON text"
            await sends.acquire()
            task = asyncio.create_task(_send(socket, frame.data))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _: sends.release())
        return None  # the browser closed (or the frame was too large: aiohttp closed it)
    finally:
        for task in list(tasks):
            task.cancel()


async def _pump(socket: Socket, cursor: str) -> Close:
    ws = socket.ws
    last = cursor
    try:
        async for view in browser_events(socket.live, socket.token, socket.claims.user_id, cursor):
            try:
                # Blocks while the socket's buffer is full: a browser that takes nothing
                # for STALL_SECONDS is cut loose (the frame already written stays queued).
                await asyncio.wait_for(ws.send_str(json.dumps(view)), STALL_SECONDS)
            except TimeoutError:
                CUT_LOOSE.inc()
                return CLOSE_RESUME, f"resume {last}"
            last = view["cursor"] or last
            socket.last = last
            if view["type"] == "resume_required":
                return CLOSE_RESUME, f"resume {last}"
    except Ended as exc:
        code = {
            grpc.StatusCode.UNAUTHENTICATED: CLOSE_UNAUTHENTICATED,
            grpc.StatusCode.INVALID_ARGUMENT: CLOSE_BAD_FRAME,  # a cursor it cannot serve
        }.get(exc.code, CLOSE_SERVER_ERROR)
        await _tell(ws, {"type": "error", "code": exc.code.name, "detail": str(exc)})
        return code, str(exc)
    return None


async def _tell(ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_str(json.dumps(event))


async def _close_soon(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close, but do not wait long for a browser that reads nothing."""
    try:
        # A close reason is at most 123 bytes of UTF-8: cut at a character boundary.
        message = reason.encode()[:120].decode(errors="ignore").encode()
        await asyncio.wait_for(ws.close(code=code, message=message), 5.0)
    except (TimeoutError, ConnectionError):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.ABNORMAL_CLOSURE)


async def _send(socket: Socket, raw: str) -> None:
    live, token = socket.live, socket.token
    request_id: Any = None
    try:
        body = _frame(raw)
        request_id = body.get("request_id")
        if request_id is not None and not isinstance(request_id, str | int):
            raise errors.InvalidArgument("request_id must be a string or a number")
        if body.get("type") != "send":
            raise errors.InvalidArgument('a frame after hello must be {"type": "send", ...}')
        chat_id = inputs.checked(inputs.text(body, "chat_id", maximum=64), "chat_id", maximum=64)
        outgoing = chat_routes.send_request(chat_id, body)
        _, messaging = await live.backends.messaging_for(socket.claims.user_id)
        reply = await messaging.Send(
            outgoing,
            metadata=bearer_metadata(token),
            timeout=live.backends.deadline,
        )
        answer = {"type": "sent", "request_id": request_id, **views.sent(reply)}
    except errors.ChatError as exc:
        answer = _failed(request_id, exc.code, str(exc))
    except grpc.aio.AioRpcError as exc:
        answer = _failed(request_id, exc.code(), exc.details() or exc.code().name)
    await _tell(socket.ws, answer)


def _failed(request_id: Any, code: grpc.StatusCode, detail: str) -> dict[str, Any]:
    return {
        "type": "send_failed",
        "request_id": request_id,
        "status": problems.HTTP_STATUS.get(code, 502),
        "code": code.name,
        "detail": detail,
    }


def _frame(raw: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(f"frame is not valid JSON: {exc}"[:200]) from None
    if not isinstance(body, dict):
        raise errors.InvalidArgument("a frame must be a JSON object")
    return body


# --- Server-Sent Events ------------------------------------------------------------------


async def ticket(request: web.Request) -> web.Response:
    """A single-use ticket for one SSE stream, so the token never appears in a URL."""
    live = request.app[LIVE]
    live.accounts.claims(request)
    token = tokens.bearer(request.headers.get("Authorization"))
    value = secrets.token_urlsafe(24)
    await live.redis.set(TICKET.format(value), token, ex=TICKET_SECONDS)
    return web.json_response({"ticket": value, "expires_in": TICKET_SECONDS}, status=201)


async def server_sent_events(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE]
    _allowed(request, live)
    value = inputs.checked(request.query.get("ticket", ""), "ticket", minimum=1, maximum=64)
    raw = await live.redis.getdel(TICKET.format(value))
    if raw is None:
        raise errors.Unauthenticated("the stream ticket is unknown, used or expired; get a new one")
    token = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        claims = live.accounts.verifier.verify_user(token)
    except tokens.InvalidToken as exc:
        raise errors.Unauthenticated(str(exc)) from None
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor", "")
    cursor = inputs.checked(cursor, "cursor", maximum=64)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must not hold events back
        }
    )
    await response.prepare(request)
    CONNECTED.labels(transport="sse").inc()
    # The heartbeat is also how a browser that left is noticed when no event comes for it:
    # its write fails, and the stream (and its place on the relay) ends with it.
    beat = asyncio.create_task(
        _heartbeat(response.write, live.web.get().heartbeat_seconds), name="sse-heartbeat"
    )
    pump = asyncio.create_task(_sse_pump(response, live, token, claims.user_id, cursor))
    try:
        await asyncio.wait({beat, pump}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (beat, pump):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        CONNECTED.labels(transport="sse").dec()
    return response


async def _sse_pump(
    response: web.StreamResponse, live: Live, token: str, user_id: int, cursor: str
) -> None:
    try:
        async for view in browser_events(live, token, user_id, cursor):
            try:
                # As for a WebSocket: a browser that takes nothing for STALL_SECONDS while
                # events wait is cut loose; it reconnects with the id of its last event.
                await asyncio.wait_for(response.write(_sse(view)), STALL_SECONDS)
            except TimeoutError:
                CUT_LOOSE.inc()
                return
            if view["type"] == "resume_required":
                return
    except Ended as exc:
        view = {"type": "error", "code": exc.code.name, "detail": str(exc)}
        with contextlib.suppress(ConnectionError):
            await response.write(_sse(view))
    except ConnectionError:
        pass  # the browser went away


def _sse(view: dict[str, Any]) -> bytes:
    head = f"id: {view['cursor']}\n" if view.get("cursor") else ""
    return f"{head}event: {view['type']}\ndata: {json.dumps(view)}\n\n".encode()


async def _heartbeat(write: Callable[[bytes], Awaitable[None]], seconds: int) -> None:
    with contextlib.suppress(ConnectionError):
        while True:
            await asyncio.sleep(seconds)
            await write(b": heartbeat\n\n")
