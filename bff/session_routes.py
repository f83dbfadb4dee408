"""Accounts and sessions over HTTP: register, log in, refresh, log out (here or everywhere).

Access tokens are short-lived JWTs checked by every service without a round trip; each names
its session (``sid``). A refresh token is ``<sid>.<generation>.<mac>``: the MAC (keyed with
the token secret) makes every generation unforgeable without storing it, and the session's
stored generation says which one is current (see ``chatlib.sessions``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import Counter

from bff import inputs, passwords, views
from chatlib import tokens
from chatlib.config_sections import AuthLimits, Features, Sessions
from chatlib.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from chatlib.grpc_auth import bearer_metadata
from chatlib.live_config import LiveSection
from chatlib.sessions import Outcome, SessionStore
from protos.chat.v1 import history_pb2, history_pb2_grpc

logger = logging.getLogger(__name__)
REFUSED = Counter(
    "bff_auth_attempts_refused_total", "Logins and registrations refused by rate limits", ["by"]
)
BUDGETS = (
    "login-failures-per-username",
    "login-failures-per-address",
    "registrations-per-address",
)
UNCOUNTED = Counter(
    "bff_auth_attempts_uncounted_total", "Attempts let through because Redis was unavailable"
)
for _budget in BUDGETS:
    REFUSED.labels(by=_budget)  # exported at 0 from the start, so a rate() has a baseline


@dataclass
class Accounts:
    history: history_pb2_grpc.HistoryServiceAsyncStub
    redis: aioredis.Redis
    store: SessionStore
    secret: str
    verifier: tokens.Verifier
    access_ttl: int
    refresh_ttl: int
    features: LiveSection[Features]
    limits: LiveSection[AuthLimits]
    sessions: LiveSection[Sessions]
    #: Per-call deadline on the history service (seconds).
    deadline: float
    #: The address of the messaging server a user's stream belongs on.
    locate: Callable[[int], Awaitable[str]]

    def service_metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer_metadata(tokens.issue(self.secret, tokens.SERVICE_SUBJECT, 60))

    def claims(self, request: web.Request) -> tokens.Claims:
        """The caller's verified claims (a user, never a service), or 401 saying why."""
        try:
            return self.verifier.verify_user(tokens.bearer(request.headers.get("Authorization")))
        except tokens.InvalidToken as exc:
            raise Unauthenticated(str(exc)) from None

    async def open(self, user_id: int) -> dict[str, Any]:
        now = int(time.time())
        session_id = await self.store.create(user_id, now + self.access_ttl, self.refresh_ttl)
        return await self._issued(user_id, session_id, 0, now)

    async def refresh(self, token: str) -> dict[str, Any]:
        session_id, generation = self._parse_refresh(token)
        now = int(time.time())
        rotation = await self.store.rotate(
            session_id,
            generation,
            now + self.access_ttl,
            self.refresh_ttl,
            now=now,
            reuse_seconds=self.sessions.get().refresh_reuse_seconds,
        )
        if rotation.outcome is Outcome.UNKNOWN:
            raise Unauthenticated("refresh token is unknown or expired; log in again")
        if rotation.outcome is Outcome.REUSED:
            raise Unauthenticated(
                "refresh token was already used; the session is ended on every device"
            )
        # ROTATED, or REPEATED: the same tokens the winning refresh was given (issued at its
        # time), so every tab or retry of one refresh carries on with one pair.
        return await self._issued(rotation.user_id, session_id, generation + 1, rotation.rotated_at)

    async def _issued(
        self, user_id: int, session_id: str, generation: int, now: int
    ) -> dict[str, Any]:
        return {
            "user_id": str(user_id),
            "access_token": tokens.issue(
                self.secret, str(user_id), self.access_ttl, session_id, now=now
            ),
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": f"{session_id}.{generation}.{self._mac(session_id, generation)}",
            "messaging_server": await self.locate(user_id),
        }

    def _mac(self, session_id: str, generation: int) -> str:
        digest = hmac.new(
            self.secret.encode(), f"refresh:{session_id}.{generation}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _parse_refresh(self, token: str) -> tuple[str, int]:
        session_id, _, rest = token.partition(".")
        generation, _, mac = rest.partition(".")
        if (
            len(session_id) != 32
            or not generation.isascii()
            or not generation.isdigit()
            or len(generation) > 9
            or not hmac.compare_digest(
                mac.encode(), self._mac(session_id, int(generation)).encode()
            )
        ):
            raise Unauthenticated("refresh token is invalid")
        return session_id, int(generation)

    async def spend(self, kind: str, subject: str, budget: int, window: int) -> None:
        """Count one attempt against ``subject``'s budget of ``kind``; 429 once it is spent."""
        key = f"chat:attempts:{kind}:{subject}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, window, nx=True)
                pipe.ttl(key)
                count, _, ttl = await pipe.execute()
        except aioredis.RedisError as exc:
            _uncounted(kind, exc)
            return
        if int(count) > budget:
            _refuse(kind, int(ttl))

    async def over(self, kind: str, subject: str, budget: int) -> None:
        """429 if ``subject`` has already spent its budget of ``kind`` (without counting)."""
        key = f"chat:attempts:{kind}:{subject}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                count, ttl = await pipe.execute()
        except aioredis.RedisError as exc:
            _uncounted(kind, exc)
            return
        if count is not None and int(count) >= budget:
            _refuse(kind, int(ttl))


def _refuse(kind: str, ttl: int) -> None:
    REFUSED.labels(by=kind).inc()
    retry = max(1, ttl)
    raise ResourceExhausted(
        f"too many attempts ({kind.replace('-', ' ')}); try again in {retry} s",
        retry_after_ms=retry * 1000,
    )


def _uncounted(kind: str, exc: Exception) -> None:
    # Open, not closed: with Redis away the budgets cannot be counted, and refusing every
    # registration for that would be an outage of its own. Logged, and counted for alerts.
    UNCOUNTED.inc()
    logger.warning("rate limit %s not applied, Redis is unavailable: %s", kind, exc)


ACCOUNTS = web.AppKey("accounts", Accounts)


def caller(request: web.Request) -> tokens.Claims:
    """The verified claims of the request's user, or 401 saying why."""
    return request.app[ACCOUNTS].claims(request)


def add_routes(app: web.Application, accounts: Accounts) -> None:
    app[ACCOUNTS] = accounts
    app.router.add_post("/v1/users", register)
    app.router.add_post("/v1/sessions", login)
    app.router.add_post("/v1/sessions/refresh", refresh)
    app.router.add_delete("/v1/sessions/current", logout)
    app.router.add_get("/v1/sessions/current/messaging-server", messaging_server)
    app.router.add_delete("/v1/sessions", logout_everywhere)
    app.router.add_put("/v1/me/password", change_password)


def _address(request: web.Request) -> str:
    # The peer's address as the socket sees it. Behind a proxy every client shares the
    # proxy's address; trusting X-Forwarded-For would let any client pick its own budget.
    return request.remote or "unknown"


async def register(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    if not accounts.features.get().registration_open:
        raise PermissionDenied("registration of new accounts is closed")
    body = await inputs.json_object(request)
    username = inputs.username(inputs.text(body, "username", maximum=64))
    password = inputs.text(body, "password", minimum=8, maximum=256)
    limits = accounts.limits.get()
    await accounts.spend(
        "registrations-per-address",
        _address(request),
        limits.registrations_per_address,
        limits.address_window_seconds,
    )
    user = await accounts.history.CreateUser(
        history_pb2.CreateUserRequest(
            username=username, password_hash=await passwords.hashed(password)
        ),
        metadata=accounts.service_metadata(),
        timeout=accounts.deadline,
    )
    return web.json_response(views.user(user), status=201)


async def login(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    body = await inputs.json_object(request)
    username = inputs.username(inputs.text(body, "username", maximum=64))
    password = inputs.text(body, "password", maximum=256)
    limits = accounts.limits.get()
    address = _address(request)
    await accounts.over("login-failures-per-username", username, limits.login_failures_per_username)
    await accounts.over("login-failures-per-address", address, limits.login_failures_per_address)
    try:
        user = await accounts.history.FindUser(
            history_pb2.FindUserRequest(username=username),
            metadata=accounts.service_metadata(),
            timeout=accounts.deadline,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        user = None
    matched = await passwords.verified(password, user.password_hash if user else None)
    if user is None or not matched:
        await accounts.spend(
            "login-failures-per-username",
            username,
            limits.login_failures_per_username,
            limits.username_window_seconds,
        )
        await accounts.spend(
            "login-failures-per-address",
            address,
            limits.login_failures_per_address,
            limits.address_window_seconds,
        )
        raise Unauthenticated("wrong username or password")
    return web.json_response(await accounts.open(user.user_id), status=201)


async def refresh(request: web.Request) -> web.Response:
    body = await inputs.json_object(request)
    token = inputs.text(body, "refresh_token", maximum=200)
    return web.json_response(await request.app[ACCOUNTS].refresh(token))


async def messaging_server(request: web.Request) -> web.Response:
    """Where the caller's stream is now: what a client asks after its server stopped
    answering (it died, or is stopping), and dials next."""
    accounts = request.app[ACCOUNTS]
    claims = accounts.claims(request)
    return web.json_response({"messaging_server": await accounts.locate(claims.user_id)})


async def logout(request: web.Request) -> web.Response:
    """End this session: its access and refresh tokens are refused everywhere and its live
    streams end, before this answers."""
    accounts = request.app[ACCOUNTS]
    claims = accounts.claims(request)
    await accounts.store.end(
        [claims.session_id], "logged out", "logout", fallback_until=claims.expires_at
    )
    return web.Response(status=204)


async def change_password(request: web.Request) -> web.Response:
    """A new password; every other session of the user ends (this one goes on)."""
    accounts = request.app[ACCOUNTS]
    claims = accounts.claims(request)
    body = await inputs.json_object(request)
    current = inputs.text(body, "current_password", maximum=256)
    new = inputs.text(body, "new_password", minimum=8, maximum=256)
    limits = accounts.limits.get()
    user = await accounts.history.FindUser(
        history_pb2.FindUserRequest(user_id=claims.user_id),
        metadata=accounts.service_metadata(),
        timeout=accounts.deadline,
    )
    # The failed-login budget of the username: a stolen session is no way around it.
    key = user.username
    await accounts.over("login-failures-per-username", key, limits.login_failures_per_username)
    if not await passwords.verified(current, user.password_hash):
        await accounts.spend(
            "login-failures-per-username",
            key,
            limits.login_failures_per_username,
            limits.username_window_seconds,
        )
        raise PermissionDenied("current_password is not your password")
    await accounts.history.UpdateUser(
        history_pb2.UpdateUserRequest(
            user_id=claims.user_id, password_hash=await passwords.hashed(new)
        ),
        metadata=accounts.service_metadata(),
        timeout=accounts.deadline,
    )
    others = await accounts.store.sessions_of(claims.user_id)
    ended = await accounts.store.end(
        [s for s in others if s != claims.session_id], "the password changed", "password"
    )
    return web.json_response({"sessions_ended": len(ended)})


async def logout_everywhere(request: web.Request) -> web.Response:
    """End every session of the caller, this one included."""
    accounts = request.app[ACCOUNTS]
    claims = accounts.claims(request)
    reason = "logged out everywhere"
    ended = await accounts.store.end_user(claims.user_id, reason, "logout_all")
    if claims.session_id not in ended:  # its refresh side expired: end its access tokens
        ended += await accounts.store.end(
            [claims.session_id], reason, "logout_all", claims.expires_at
        )
    return web.json_response({"sessions_ended": len(ended)})
