"""Group chats over HTTP: each handler checks the whole request, then calls GroupService on
the caller's messaging server.

Every change takes an idempotency key, as the ``Idempotency-Key`` header or the body's
``client_request_id``: a retry with the same key changes nothing more and answers the same.
Without one the server makes one up (then a retry may apply twice where that means
anything: a rename back and forth; adding or removing the same member twice is one change
anyway).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bff import inputs, views
from bff.routing import BACKENDS
from bff.session_routes import caller
from chatlib import tokens
from chatlib.errors import InvalidArgument, NotFound
from messaging.groups.rules import MAX_PER_CALL
from protos.chat.v1 import groups_pb2


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/groups", create_group)
    app.router.add_get("/v1/groups/{chat_id}", get_group)
    app.router.add_patch("/v1/groups/{chat_id}", rename_group)
    app.router.add_post("/v1/groups/{chat_id}/members", add_members)
    app.router.add_delete("/v1/groups/{chat_id}/members/{user_id}", remove_member)
    app.router.add_put("/v1/groups/{chat_id}/members/{user_id}/role", set_role)


async def create_group(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    call = groups_pb2.CreateGroupRequest(
        name=inputs.text(body, "name", maximum=100, minimum=1),
        member_ids=_user_ids(body, "member_ids", required=False),
        client_request_id=inputs.request_id(request, body),
    )
    stub, options = _groups(request, claims)
    reply = await stub.CreateGroup(call, **options)
    return web.json_response(views.group(reply), status=201)


async def get_group(request: web.Request) -> web.Response:
    claims = caller(request)
    call = groups_pb2.GetGroupRequest(chat_id=inputs.chat_id(request))
    stub, options = _groups(request, claims)
    reply = await stub.GetGroup(call, **options)
    return web.json_response(views.group(reply))


async def rename_group(request: web.Request) -> web.Response:
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    body = await inputs.json_object(request)
    call = groups_pb2.RenameGroupRequest(
        chat_id=chat_id,
        name=inputs.text(body, "name", maximum=100, minimum=1),
        client_request_id=inputs.request_id(request, body),
    )
    stub, options = _groups(request, claims)
    reply = await stub.RenameGroup(call, **options)
    return web.json_response(views.group(reply))


async def add_members(request: web.Request) -> web.Response:
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    body = await inputs.json_object(request)
    call = groups_pb2.AddMembersRequest(
        chat_id=chat_id,
        user_ids=_user_ids(body, "user_ids", required=True),
        client_request_id=inputs.request_id(request, body),
    )
    stub, options = _groups(request, claims)
    reply = await stub.AddMembers(call, **options)
    return web.json_response(views.group(reply))


async def remove_member(request: web.Request) -> web.Response:
    """Remove a member; a member removing themselves leaves the group."""
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    user_id = _path_user(request)
    request_id = inputs.request_id(request, {})
    stub, options = _groups(request, claims)
    if user_id == claims.user_id:
        leave = groups_pb2.LeaveGroupRequest(chat_id=chat_id, client_request_id=request_id)
        reply = await stub.LeaveGroup(leave, **options)
    else:
        remove = groups_pb2.RemoveMemberRequest(
            chat_id=chat_id, user_id=user_id, client_request_id=request_id
        )
        reply = await stub.RemoveMember(remove, **options)
    return web.json_response(views.group(reply))


async def set_role(request: web.Request) -> web.Response:
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    user_id = _path_user(request)
    body = await inputs.json_object(request)
    call = groups_pb2.SetRoleRequest(
        chat_id=chat_id,
        user_id=user_id,
        role=inputs.text(body, "role", maximum=16, minimum=1),
        client_request_id=inputs.request_id(request, body),
    )
    stub, options = _groups(request, claims)
    reply = await stub.SetRole(call, **options)
    return web.json_response(views.group(reply))


def _groups(request: web.Request, claims: tokens.Claims) -> tuple[Any, dict[str, Any]]:
    """The group service the caller's calls go to, and the keywords of a call to it."""
    backends = request.app[BACKENDS]
    return backends.groups_for(claims.user_id), backends.call_options(request)


def _path_user(request: web.Request) -> int:
    user_id = inputs.id_value(request.match_info["user_id"], "user_id")
    if user_id > inputs.MAX_ID:
        raise NotFound(f"user {user_id} is not a member")
    return user_id


def _user_ids(body: dict[str, Any], field: str, *, required: bool) -> list[int]:
    raw = body.get(field, [] if not required else None)
    if not isinstance(raw, list) or (required and not raw):
        raise InvalidArgument(f"field {field!r} must be a non-empty list of user ids")
    if len(raw) > MAX_PER_CALL:
        raise InvalidArgument(f"field {field!r} names {len(raw)} users; at most {MAX_PER_CALL}")
    found = []
    for index, value in enumerate(raw):
        if not isinstance(value, str):
            raise InvalidArgument(f"{field}[{index}] must be a user id as a string")
        user_id = inputs.id_value(value, f"{field}[{index}]")
        if user_id > inputs.MAX_ID:
            raise NotFound(f"user {user_id} does not exist")
        found.append(user_id)
    return found
