"""Blocking over HTTP: ``PUT`` and ``DELETE /v1/blocks/{user_id}``, and the caller's list at
``GET /v1/blocks`` (which clients use to hide what blocked people say in groups). Messaging
decides and enforces (``messaging/blocks.py``); these routes check the request and ask it."""

from __future__ import annotations

from aiohttp import web

from bff import inputs, views
from bff.chat_routes import messaging_of
from bff.session_routes import caller
from chatlib.errors import NotFound
from protos.chat.v1 import messaging_pb2


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/blocks", list_blocked)
    app.router.add_put("/v1/blocks/{user_id}", block)
    app.router.add_delete("/v1/blocks/{user_id}", unblock)


async def list_blocked(request: web.Request) -> web.Response:
    messaging, call = await messaging_of(request, caller(request))
    found = await messaging.ListBlocked(messaging_pb2.ListBlockedRequest(), **call)
    return web.json_response(views.blocked(found))


async def block(request: web.Request) -> web.Response:
    messaging, call = await messaging_of(request, caller(request))
    await messaging.BlockUser(messaging_pb2.BlockUserRequest(user_id=_user_id(request)), **call)
    return web.Response(status=204)


async def unblock(request: web.Request) -> web.Response:
    messaging, call = await messaging_of(request, caller(request))
    unblocking = messaging_pb2.UnblockUserRequest(user_id=_user_id(request))
    await messaging.UnblockUser(unblocking, **call)
    return web.Response(status=204)


def _user_id(request: web.Request) -> int:
    user_id = inputs.id_value(request.match_info["user_id"], "user_id")
    if user_id > inputs.MAX_ID:
        raise NotFound(f"user {user_id} does not exist")
    return user_id
