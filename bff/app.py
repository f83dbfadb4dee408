"""The BFF's HTTP API. Each handler checks its input, then calls messaging or history."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aioredis
from aiohttp import web

from bff import inputs, passwords
from bff.openapi import DOCUMENT
from chatlib import problems, tokens
from chatlib.config_sections import Features
from chatlib.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from chatlib.grpc_auth import bearer_metadata
from chatlib.hashing import partition_for
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from protos.chat.v1 import history_pb2, history_pb2_grpc, messaging_pb2, messaging_pb2_grpc

SESSION_KEY = "chat:session:{}"


@dataclass
class Backends:
    history: history_pb2_grpc.HistoryServiceAsyncStub
    redis: aioredis.Redis
    secret: str
    verifier: tokens.Verifier
    access_ttl: int
    refresh_ttl: int
    messaging_channels: dict[str, grpc.aio.Channel]
    client_interceptors: list[grpc.aio.ClientInterceptor]
    messaging_dial: dict[str, str]
    #: Live config: routing changes and feature flags apply from the next request.
    partitioning: LiveSection[Partitioning]
    features: LiveSection[Features]

    def service_metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer_metadata(tokens.issue(self.secret, tokens.SERVICE_SUBJECT, 60))

    async def messaging_for(
        self, user_id: int
    ) -> tuple[str, messaging_pb2_grpc.MessagingServiceAsyncStub]:
        """The messaging server that owns the user's partition: where their stream lives."""
        config = self.partitioning.get()
        owner = config.owner(partition_for(user_id, config.partitions))
        dial = self.messaging_dial.get(owner.name, owner.target)
        channel = self.messaging_channels.get(dial)
        if channel is None:
            channel = grpc.aio.insecure_channel(dial, interceptors=self.client_interceptors)
            self.messaging_channels[dial] = channel
        return owner.target, messaging_pb2_grpc.MessagingServiceStub(channel)


BACKENDS = web.AppKey("backends", Backends)


def create_app(backends: Backends, max_request_bytes: int) -> web.Application:
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[problems.middleware],
    )
    app[BACKENDS] = backends
    app.router.add_post("/v1/users", register)
    app.router.add_post("/v1/sessions", login)
    app.router.add_post("/v1/sessions/refresh", refresh)
    app.router.add_post("/v1/chats/direct", open_direct_chat)
    app.router.add_get("/v1/chats", list_chats)
    app.router.add_get("/v1/chats/{chat_id}/messages", history_page)
    app.router.add_post("/v1/chats/{chat_id}/messages", send_message)
    app.router.add_get("/v1/openapi.json", openapi)
    return app


def _claims(request: web.Request) -> tokens.Claims:
    try:
        claims = request.app[BACKENDS].verifier.verify(
            tokens.bearer(request.headers.get("Authorization"))
        )
        claims.user_id  # noqa: B018 - raises for a service token
    except tokens.InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None
    return claims


def _metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(tokens.bearer(request.headers.get("Authorization")))


async def register(request: web.Request) -> web.Response:
    if not request.app[BACKENDS].features.get().registration_open:
        raise PermissionDenied("registration of new accounts is closed")
    body = await inputs.json_object(request)
    username = inputs.username(inputs.text(body, "username", maximum=64))
    password = inputs.text(body, "password", minimum=8, maximum=256)
    backends = request.app[BACKENDS]
    user = await backends.history.CreateUser(
        history_pb2.CreateUserRequest(
            username=username, password_hash=passwords.hash_password(password)
        ),
        metadata=backends.service_metadata(),
    )
    return web.json_response({"user_id": str(user.user_id), "username": user.username}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await inputs.json_object(request)
    username = inputs.username(inputs.text(body, "username", maximum=64))
    password = inputs.text(body, "password", maximum=256)
    backends = request.app[BACKENDS]
    try:
        user = await backends.history.FindUser(
            history_pb2.FindUserRequest(username=username), metadata=backends.service_metadata()
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        user = None
    if user is None or not passwords.verify_password(password, user.password_hash):
        raise Unauthenticated("wrong username or password")
    return web.json_response(await _open_session(backends, user.user_id), status=201)


async def refresh(request: web.Request) -> web.Response:
    body = await inputs.json_object(request)
    token = inputs.text(body, "refresh_token", maximum=200)
    session_id, _, secret = token.partition(".")
    backends = request.app[BACKENDS]
    raw = await backends.redis.get(SESSION_KEY.format(session_id))
    if raw is None:
        raise Unauthenticated("refresh token is unknown or expired")
    stored = json.loads(raw)
    if not secrets.compare_digest(stored["secret"], secret):
        raise Unauthenticated("refresh token is invalid")
    await backends.redis.delete(SESSION_KEY.format(session_id))
    return web.json_response(await _open_session(backends, int(stored["user_id"])))


async def _open_session(backends: Backends, user_id: int) -> dict[str, Any]:
    session_id = secrets.token_hex(16)
    refresh_secret = secrets.token_urlsafe(32)
    await backends.redis.set(
        SESSION_KEY.format(session_id),
        json.dumps({"user_id": user_id, "secret": refresh_secret}),
        ex=backends.refresh_ttl,
    )
    address, _ = await backends.messaging_for(user_id)
    return {
        "user_id": str(user_id),
        "access_token": tokens.issue(
            backends.secret, str(user_id), backends.access_ttl, session_id
        ),
        "token_type": "Bearer",
        "expires_in": backends.access_ttl,
        "refresh_token": f"{session_id}.{refresh_secret}",
        "messaging_server": address,
    }


async def open_direct_chat(request: web.Request) -> web.Response:
    claims = _claims(request)
    body = await inputs.json_object(request)
    backends = request.app[BACKENDS]
    if "peer_id" in body:
        peer_id = inputs.id_field(body, "peer_id")
        if peer_id > inputs.MAX_ID:
            raise NotFound(f"user {peer_id} does not exist")
    elif "peer_username" in body:
        name = inputs.username(inputs.text(body, "peer_username", maximum=64), "peer_username")
        try:
            peer = await backends.history.FindUser(
                history_pb2.FindUserRequest(username=name), metadata=_metadata(request)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"no user named {name!r}") from None
            raise
        peer_id = peer.user_id
    else:
        raise InvalidArgument("give 'peer_id' or 'peer_username'")
    _, messaging = await backends.messaging_for(claims.user_id)
    chat = await messaging.OpenDirectChat(
        messaging_pb2.OpenDirectChatRequest(peer_id=peer_id), metadata=_metadata(request)
    )
    return web.json_response(
        {
            "chat_id": chat.chat_id,
            "kind": chat.kind,
            "member_ids": [str(m) for m in chat.member_ids],
        }
    )


async def list_chats(request: web.Request) -> web.Response:
    _claims(request)
    backends = request.app[BACKENDS]
    reply = await backends.history.ListChats(
        history_pb2.ListChatsRequest(), metadata=_metadata(request)
    )
    return web.json_response(
        {
            "chats": [
                {
                    "chat_id": c.chat_id,
                    "kind": c.kind,
                    "member_ids": [str(m) for m in c.member_ids],
                    "last_message_id": str(c.last_message_id) if c.last_message_id else None,
                    "last_sender_id": str(c.last_sender_id) if c.last_sender_id else None,
                    "last_preview": c.last_preview,
                    "unread_count": c.unread_count,
                }
                for c in reply.chats
            ]
        }
    )


async def history_page(request: web.Request) -> web.Response:
    _claims(request)
    backends = request.app[BACKENDS]
    reply = await backends.history.GetHistory(
        history_pb2.GetHistoryRequest(
            chat_id=_chat_id(request),
            before_id=inputs.cursor_query(request, "before"),
            after_id=inputs.cursor_query(request, "after"),
            limit=inputs.limit_query(request),
        ),
        metadata=_metadata(request),
    )
    return web.json_response(
        {
            "messages": [
                {
                    "message_id": str(m.message_id),
                    "chat_id": m.chat_id,
                    "sender_id": str(m.sender_id),
                    "body": m.body,
                    "client_message_id": m.client_message_id,
                    "created_at_ms": m.created_at_ms,
                }
                for m in reply.messages
            ],
            "has_more": reply.has_more,
        }
    )


async def send_message(request: web.Request) -> web.Response:
    claims = _claims(request)
    body = await inputs.json_object(request)
    request_body = messaging_pb2.SendRequest(
        chat_id=_chat_id(request),
        client_message_id=inputs.text(body, "client_message_id", maximum=64),
        body=inputs.text(body, "body", maximum=1_000_000),
    )
    backends = request.app[BACKENDS]
    _, messaging = await backends.messaging_for(claims.user_id)
    reply = await messaging.Send(
        request_body,
        metadata=_metadata(request),
    )
    return web.json_response(
        {
            "message_id": str(reply.message_id),
            "created_at_ms": reply.created_at_ms,
            "duplicate": reply.duplicate,
        },
        status=200 if reply.duplicate else 201,
    )


def _chat_id(request: web.Request) -> str:
    return inputs.checked(request.match_info["chat_id"], "chat_id", maximum=64)


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
