"""Chats and messages over HTTP: each handler checks the whole request, then routes it."""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from bff import inputs, views
from bff.routing import BACKENDS
from bff.sessions import ACCOUNTS
from chatlib import tokens
from chatlib.errors import InvalidArgument, NotFound
from chatlib.grpc_auth import bearer_metadata
from protos.chat.v1 import history_pb2, messaging_pb2


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/users", find_user)
    app.router.add_get("/v1/users/{user_id}", user_by_id)
    app.router.add_post("/v1/chats/direct", open_direct_chat)
    app.router.add_get("/v1/chats", list_chats)
    app.router.add_get("/v1/chats/{chat_id}/messages", history_page)
    app.router.add_post("/v1/chats/{chat_id}/messages", send_message)
    app.router.add_post("/v1/chats/{chat_id}/read", mark_read)
    app.router.add_get("/v1/chats/{chat_id}/messages/{message_id}/readers", readers)


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
        peer_id = (await _user_named(request, name)).user_id
    else:
        raise InvalidArgument("give 'peer_id' or 'peer_username'")
    _, messaging = await backends.messaging_for(claims.user_id)
    chat = await messaging.OpenDirectChat(
        messaging_pb2.OpenDirectChatRequest(peer_id=peer_id),
        metadata=_metadata(request),
        timeout=backends.deadline,
    )
    return web.json_response(views.chat(chat))


async def find_user(request: web.Request) -> web.Response:
    """A user by name (``?username=``): how clients turn the names people type into the ids
    groups take."""
    _claims(request)
    if "username" not in request.query:
        raise InvalidArgument("query parameter 'username' is required")
    name = inputs.username(request.query["username"], "query parameter 'username'")
    user = await _find(request, history_pb2.FindUserRequest(username=name), repr(name))
    return web.json_response(views.user(user))


async def user_by_id(request: web.Request) -> web.Response:
    _claims(request)
    user_id = inputs.id_value(request.match_info["user_id"], "user_id")
    if user_id > inputs.MAX_ID:
        raise NotFound(f"no user {user_id}")
    user = await _find(request, history_pb2.FindUserRequest(user_id=user_id), str(user_id))
    return web.json_response(views.user(user))


async def _user_named(request: web.Request, name: str) -> history_pb2.User:
    return await _find(request, history_pb2.FindUserRequest(username=name), repr(name))


async def _find(
    request: web.Request, query: history_pb2.FindUserRequest, what: str
) -> history_pb2.User:
    backends = request.app[BACKENDS]
    try:
        return await backends.history.FindUser(
            query, metadata=_metadata(request), timeout=backends.deadline
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"no user {what}") from None
        raise


async def list_chats(request: web.Request) -> web.Response:
    _claims(request)
    query = history_pb2.ListChatsRequest(
        limit=inputs.limit_query(request),
        cursor=inputs.checked(request.query.get("cursor", ""), "cursor", maximum=80),
    )
    backends = request.app[BACKENDS]
    reply = await backends.history.ListChats(
        query, metadata=_metadata(request), timeout=backends.deadline
    )
    return web.json_response(views.chat_list(reply))


async def history_page(request: web.Request) -> web.Response:
    _claims(request)
    query = history_pb2.GetHistoryRequest(
        chat_id=_chat_id(request),
        before_id=inputs.cursor_query(request, "before"),
        after_id=inputs.cursor_query(request, "after"),
        limit=inputs.limit_query(request),
    )
    backends = request.app[BACKENDS]
    reply = await backends.history.GetHistory(
        query, metadata=_metadata(request), timeout=backends.deadline
    )
    return web.json_response(views.page(reply))


async def send_message(request: web.Request) -> web.Response:
    claims = _claims(request)
    body = await inputs.json_object(request)
    outgoing = send_request(_chat_id(request), body)
    backends = request.app[BACKENDS]
    _, messaging = await backends.messaging_for(claims.user_id)
    reply = await messaging.Send(outgoing, metadata=_metadata(request), timeout=backends.deadline)
    return web.json_response(views.sent(reply), status=200 if reply.duplicate else 201)


async def mark_read(request: web.Request) -> web.Response:
    claims = _claims(request)
    chat_id = _chat_id(request)
    body = await inputs.json_object(request)
    # Past every possible id is "everything": the service reads that as up to now.
    message_id = min(inputs.id_field(body, "message_id"), inputs.MAX_ID)
    backends = request.app[BACKENDS]
    _, messaging = await backends.messaging_for(claims.user_id)
    await messaging.MarkRead(
        messaging_pb2.MarkReadRequest(chat_id=chat_id, message_id=message_id),
        metadata=_metadata(request),
        timeout=backends.deadline,
    )
    return web.Response(status=204)


async def readers(request: web.Request) -> web.Response:
    """Who has read the chat up to a message."""
    _claims(request)
    chat_id = _chat_id(request)
    message_id = min(inputs.id_value(request.match_info["message_id"], "message_id"), inputs.MAX_ID)
    backends = request.app[BACKENDS]
    reply = await backends.history.GetReaders(
        history_pb2.GetReadersRequest(chat_id=chat_id, message_id=message_id),
        metadata=_metadata(request),
        timeout=backends.deadline,
    )
    return web.json_response(views.readers(reply))


def send_request(chat_id: str, body: dict[str, Any]) -> messaging_pb2.SendRequest:
    """A send as HTTP and the WebSocket both take it, checked before it is routed."""
    return messaging_pb2.SendRequest(
        chat_id=chat_id,
        client_message_id=inputs.text(body, "client_message_id", maximum=64),
        body=inputs.text(body, "body", maximum=1_000_000),
    )


def _chat_id(request: web.Request) -> str:
    return inputs.checked(request.match_info["chat_id"], "chat_id", maximum=64)
