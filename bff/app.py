"""The BFF's HTTP API. Each handler checks its input, then calls messaging or history."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from aiohttp import web

from bff import inputs, sessions
from bff.openapi import DOCUMENT
from bff.sessions import ACCOUNTS, Accounts
from chatlib import ops, problems, tokens
from chatlib.errors import InvalidArgument, NotFound
from chatlib.grpc_auth import bearer_metadata
from chatlib.hashing import partition_for
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from protos.chat.v1 import history_pb2, history_pb2_grpc, messaging_pb2, messaging_pb2_grpc


@dataclass
class Backends:
    history: history_pb2_grpc.HistoryServiceAsyncStub
    #: Per-call deadline on every gRPC call the BFF makes (seconds): a backend that hangs
    #: is answered 504 instead of holding the client until its own timeout.
    deadline: float
    messaging_channels: dict[str, grpc.aio.Channel]
    client_interceptors: list[grpc.aio.ClientInterceptor]
    messaging_dial: dict[str, str]
    #: Live config: routing changes and feature flags apply from the next request.
    partitioning: LiveSection[Partitioning]

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


def create_app(backends: Backends, accounts: Accounts, max_request_bytes: int) -> web.Application:
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[ops.http_metrics, problems.middleware],
    )
    app[BACKENDS] = backends
    sessions.add_routes(app, accounts)
    app.router.add_post("/v1/chats/direct", open_direct_chat)
    app.router.add_get("/v1/chats", list_chats)
    app.router.add_get("/v1/chats/{chat_id}/messages", history_page)
    app.router.add_post("/v1/chats/{chat_id}/messages", send_message)
    app.router.add_get("/v1/openapi.json", openapi)
    return app


def _claims(request: web.Request) -> tokens.Claims:
    return request.app[ACCOUNTS].claims(request)


def _metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(tokens.bearer(request.headers.get("Authorization")))


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
                history_pb2.FindUserRequest(username=name),
                metadata=_metadata(request),
                timeout=backends.deadline,
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
        messaging_pb2.OpenDirectChatRequest(peer_id=peer_id),
        metadata=_metadata(request),
        timeout=backends.deadline,
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
        history_pb2.ListChatsRequest(), metadata=_metadata(request), timeout=backends.deadline
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
        timeout=backends.deadline,
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
        timeout=backends.deadline,
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
