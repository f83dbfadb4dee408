"""Chats and messages over HTTP: each handler checks the whole request, then routes it."""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from bff import inputs, views
from bff.routing import BACKENDS
from bff.session_routes import ACCOUNTS, caller
from chatlib import preferences, tokens
from chatlib.errors import InvalidArgument, NotFound
from chatlib.presence_state import MAX_ASKED
from protos.chat.v1 import history_pb2, messaging_pb2


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/users", find_user)
    app.router.add_get("/v1/users/{user_id}", user_by_id)
    app.router.add_get("/v1/profiles", profiles)
    app.router.add_put("/v1/me/profile", update_profile)
    app.router.add_post("/v1/me/avatar", create_avatar_upload)
    app.router.add_get("/v1/users/{user_id}/avatar", avatar_link)
    app.router.add_post("/v1/chats/direct", open_direct_chat)
    app.router.add_get("/v1/chats", list_chats)
    app.router.add_get("/v1/chats/{chat_id}/messages", history_page)
    app.router.add_get("/v1/chats/{chat_id}/search", search)
    app.router.add_post("/v1/chats/{chat_id}/attachments", create_upload)
    app.router.add_get(
        "/v1/chats/{chat_id}/messages/{message_id}/attachments/{attachment_id}", attachment_link
    )
    app.router.add_post("/v1/chats/{chat_id}/messages", send_message)
    app.router.add_post("/v1/chats/{chat_id}/read", mark_read)
    app.router.add_get("/v1/chats/{chat_id}/messages/{message_id}/readers", readers)
    app.router.add_post("/v1/chats/{chat_id}/delivered", mark_delivered)
    app.router.add_patch("/v1/chats/{chat_id}/messages/{message_id}", edit_message)
    app.router.add_delete("/v1/chats/{chat_id}/messages/{message_id}", delete_message)
    reactions = "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"
    app.router.add_put(reactions, add_reaction)
    app.router.add_delete(reactions, remove_reaction)
    app.router.add_post("/v1/chats/{chat_id}/typing", set_typing)
    app.router.add_get("/v1/presence", presence)
    app.router.add_get("/v1/me/notifications", notification_settings)
    app.router.add_put("/v1/me/notifications", put_notification_settings)


async def open_direct_chat(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    if "peer_id" in body:
        peer_id = inputs.id_field(body, "peer_id")
        if peer_id > inputs.MAX_ID:
            raise NotFound(f"user {peer_id} does not exist")
    elif "peer_username" in body:
        name = inputs.username(inputs.text(body, "peer_username", maximum=64), "peer_username")
        peer_id = (await _user_named(request, name)).user_id
    else:
        raise InvalidArgument("give 'peer_id' or 'peer_username'")
    messaging, call = await messaging_of(request, claims)
    chat = await messaging.OpenDirectChat(
        messaging_pb2.OpenDirectChatRequest(peer_id=peer_id), **call
    )
    return web.json_response(views.chat(chat))


async def find_user(request: web.Request) -> web.Response:
    """A user by name (``?username=``): how clients turn the names people type into the ids
    groups take."""
    caller(request)
    if "username" not in request.query:
        raise InvalidArgument("query parameter 'username' is required")
    name = inputs.username(request.query["username"], "query parameter 'username'")
    user = await _find(request, history_pb2.FindUserRequest(username=name), repr(name))
    return web.json_response(views.user(user))


async def user_by_id(request: web.Request) -> web.Response:
    caller(request)
    user_id = inputs.id_value(request.match_info["user_id"], "user_id")
    if user_id > inputs.MAX_ID:
        raise NotFound(f"no user {user_id}")
    user = await _find(request, history_pb2.FindUserRequest(user_id=user_id), str(user_id))
    return web.json_response(views.user(user))


async def profiles(request: web.Request) -> web.Response:
    """Several users' names and display names at once (those that exist)."""
    caller(request)
    raw = request.query.get("user_ids", "")
    wanted = [inputs.id_value(part, "user_ids") for part in raw.split(",") if part] if raw else []
    if not 0 < len(wanted) <= MAX_ASKED:
        raise InvalidArgument(f"query parameter 'user_ids' must name 1 to {MAX_ASKED} user ids")
    backends = request.app[BACKENDS]
    reply = await backends.history.GetUsers(
        history_pb2.GetUsersRequest(user_ids=[u for u in wanted if u < 2**64]),
        **backends.call_options(request),
    )
    return web.json_response({"profiles": [views.user(u) for u in reply.users]})


async def update_profile(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    if "display_name" not in body and "avatar_id" not in body:
        raise InvalidArgument("give 'display_name', 'avatar_id' or both")
    change = messaging_pb2.UpdateProfileRequest()
    if "display_name" in body:
        change.display_name = inputs.text(body, "display_name", maximum=64)
    if "avatar_id" in body:  # null removes the picture
        avatar = 0 if body["avatar_id"] is None else inputs.id_field(body, "avatar_id")
        if avatar >= 2**64:
            raise NotFound(f"no avatar upload {avatar} of yours")
        change.avatar_id = avatar
    messaging, call = await messaging_of(request, claims)
    return web.json_response(views.user(await messaging.UpdateProfile(change, **call)))


async def create_avatar_upload(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    size = inputs.whole(body.get("size"), "field 'size' (bytes)")
    upload = messaging_pb2.CreateAvatarUploadRequest(
        size=max(min(size, 2**62), -1),
        content_type=inputs.text(body, "content_type", minimum=1, maximum=127),
    )
    messaging, call = await messaging_of(request, claims)
    reply = await messaging.CreateAvatarUpload(upload, **call)
    return web.json_response(views.upload(reply), status=201)


async def avatar_link(request: web.Request) -> web.Response:
    claims = caller(request)
    user_id = inputs.id_value(request.match_info["user_id"], "user_id")
    if user_id > inputs.MAX_ID:
        raise NotFound(f"no user {user_id}")
    asked = messaging_pb2.GetAvatarRequest(user_id=user_id)
    messaging, call = await messaging_of(request, claims)
    return web.json_response(views.attachment_link(await messaging.GetAvatar(asked, **call)))


async def _user_named(request: web.Request, name: str) -> history_pb2.User:
    return await _find(request, history_pb2.FindUserRequest(username=name), repr(name))


async def _find(
    request: web.Request, query: history_pb2.FindUserRequest, what: str
) -> history_pb2.User:
    backends = request.app[BACKENDS]
    try:
        return await backends.history.FindUser(query, **backends.call_options(request))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"no user {what}") from None
        raise


async def list_chats(request: web.Request) -> web.Response:
    caller(request)
    query = history_pb2.ListChatsRequest(
        limit=inputs.limit_query(request),
        cursor=inputs.checked(request.query.get("cursor", ""), "cursor", maximum=80),
    )
    backends = request.app[BACKENDS]
    reply = await backends.history.ListChats(query, **backends.call_options(request))
    return web.json_response(views.chat_list(reply))


async def history_page(request: web.Request) -> web.Response:
    caller(request)
    query = history_pb2.GetHistoryRequest(
        chat_id=inputs.chat_id(request),
        before_id=inputs.cursor_query(request, "before"),
        after_id=inputs.cursor_query(request, "after"),
        limit=inputs.limit_query(request),
    )
    backends = request.app[BACKENDS]
    reply = await backends.history.GetHistory(query, **backends.call_options(request))
    return web.json_response(views.page(reply))


async def search(request: web.Request) -> web.Response:
    caller(request)
    if "q" not in request.query:
        raise InvalidArgument("query parameter 'q' is required: the words to find")
    query = history_pb2.SearchMessagesRequest(
        chat_id=inputs.chat_id(request),
        query=inputs.checked(request.query["q"], "q", minimum=1, maximum=inputs.MAX_QUERY),
        before_id=inputs.cursor_query(request, "before"),
        limit=inputs.limit_query(request),
    )
    backends = request.app[BACKENDS]
    reply = await backends.history.SearchMessages(query, **backends.call_options(request))
    return web.json_response(views.page(reply))


async def create_upload(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    size = inputs.whole(body.get("size"), "field 'size' (bytes)")
    upload = messaging_pb2.CreateUploadRequest(
        chat_id=inputs.chat_id(request),
        name=inputs.text(body, "name", minimum=1, maximum=255),
        size=max(min(size, 2**62), -1),
        content_type=inputs.text(body, "content_type", minimum=1, maximum=127),
    )
    messaging, call = await messaging_of(request, claims)
    reply = await messaging.CreateUpload(upload, **call)
    return web.json_response(views.upload(reply), status=201)


async def attachment_link(request: web.Request) -> web.Response:
    claims = caller(request)
    asked = messaging_pb2.GetAttachmentRequest(
        chat_id=inputs.chat_id(request),
        message_id=_message_id(request),
        attachment_id=inputs.id_value(request.match_info["attachment_id"], "attachment_id"),
    )
    if asked.attachment_id >= 2**64:
        raise NotFound(f"no attachment {asked.attachment_id}")
    messaging, call = await messaging_of(request, claims)
    return web.json_response(views.attachment_link(await messaging.GetAttachment(asked, **call)))


async def send_message(request: web.Request) -> web.Response:
    claims = caller(request)
    body = await inputs.json_object(request)
    outgoing = send_request(inputs.chat_id(request), body)
    messaging, call = await messaging_of(request, claims)
    return _created(await messaging.Send(outgoing, **call))


async def mark_read(request: web.Request) -> web.Response:
    return await _mark(request, read=True)


async def mark_delivered(request: web.Request) -> web.Response:
    return await _mark(request, read=False)


async def _mark(request: web.Request, *, read: bool) -> web.Response:
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    body = await inputs.json_object(request)
    # Past every possible id is "everything": the service reads that as up to now.
    message_id = min(inputs.id_field(body, "message_id"), inputs.MAX_ID)
    messaging, call = await messaging_of(request, claims)
    if read:
        mark = messaging_pb2.MarkReadRequest(chat_id=chat_id, message_id=message_id)
        await messaging.MarkRead(mark, **call)
    else:
        received = messaging_pb2.MarkDeliveredRequest(chat_id=chat_id, message_id=message_id)
        await messaging.MarkDelivered(received, **call)
    return web.Response(status=204)


async def edit_message(request: web.Request) -> web.Response:
    claims = caller(request)
    chat_id, message_id = inputs.chat_id(request), _message_id(request)
    body = await inputs.json_object(request)
    edit = messaging_pb2.EditMessageRequest(
        chat_id=chat_id,
        message_id=message_id,
        body=inputs.text(body, "body", maximum=1_000_000),
        client_request_id=inputs.request_id(request, body),
    )
    messaging, call = await messaging_of(request, claims)
    return _created(await messaging.EditMessage(edit, **call))


async def delete_message(request: web.Request) -> web.Response:
    claims = caller(request)
    delete = messaging_pb2.DeleteMessageRequest(
        chat_id=inputs.chat_id(request),
        message_id=_message_id(request),
        client_request_id=inputs.request_id(request, {}),
    )
    messaging, call = await messaging_of(request, claims)
    return _created(await messaging.DeleteMessage(delete, **call))


async def add_reaction(request: web.Request) -> web.Response:
    return await _react(request, remove=False)


async def remove_reaction(request: web.Request) -> web.Response:
    return await _react(request, remove=True)


async def _react(request: web.Request, *, remove: bool) -> web.Response:
    claims = caller(request)
    react = messaging_pb2.ReactRequest(
        chat_id=inputs.chat_id(request),
        message_id=_message_id(request),
        emoji=inputs.checked(request.match_info["emoji"], "emoji", maximum=32, minimum=1),
        remove=remove,
        client_request_id=inputs.request_id(request, {}),
    )
    messaging, call = await messaging_of(request, claims)
    return _created(await messaging.React(react, **call))


async def set_typing(request: web.Request) -> web.Response:
    claims = caller(request)
    chat_id = inputs.chat_id(request)
    body = await inputs.optional_json_object(request)
    stopped = body.get("stopped", False)
    if not isinstance(stopped, bool):
        raise InvalidArgument("field 'stopped' must be true or false")
    messaging, call = await messaging_of(request, claims)
    await messaging.SetTyping(
        messaging_pb2.SetTypingRequest(chat_id=chat_id, stopped=stopped), **call
    )
    return web.Response(status=204)


async def presence(request: web.Request) -> web.Response:
    """Presence of people one shares a chat with (``?user_ids=1,2``)."""
    claims = caller(request)
    raw = request.query.get("user_ids")
    if not raw:
        raise InvalidArgument("query parameter 'user_ids' is required (ids, comma-separated)")
    parts = raw.split(",")
    if len(parts) > MAX_ASKED:
        raise InvalidArgument(f"user_ids names {len(parts)} users; at most {MAX_ASKED}")
    users = [inputs.id_value(part, "user_ids") for part in parts]
    if any(u > inputs.MAX_ID for u in users):
        raise NotFound("no such user")
    messaging, call = await messaging_of(request, claims)
    reply = await messaging.GetPresence(messaging_pb2.GetPresenceRequest(user_ids=users), **call)
    return web.json_response(views.presences(reply))


async def notification_settings(request: web.Request) -> web.Response:
    claims = caller(request)
    found = await preferences.get(request.app[ACCOUNTS].redis, claims.user_id)
    return web.json_response({"previews": found.previews})


async def put_notification_settings(request: web.Request) -> web.Response:
    """What notifications for offline users carry (the notifier reads it per notification)."""
    claims = caller(request)
    body = await inputs.json_object(request)
    unknown = sorted(set(body) - {"previews"})
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r} (known: previews)")
    previews = body.get("previews")
    if not isinstance(previews, bool):
        raise InvalidArgument("field 'previews' must be true or false")
    chosen = preferences.Preferences(previews=previews)
    await preferences.put(request.app[ACCOUNTS].redis, claims.user_id, chosen)
    return web.json_response({"previews": chosen.previews})


def _created(reply: messaging_pb2.SendResponse) -> web.Response:
    """A new log entry (201), or the one a retry with the same key made already (200)."""
    return web.json_response(views.sent(reply), status=200 if reply.duplicate else 201)


async def messaging_of(request: web.Request, claims: tokens.Claims) -> tuple[Any, dict[str, Any]]:
    """The caller's messaging server and the keywords of a call to it."""
    backends = request.app[BACKENDS]
    _, messaging = await backends.messaging_for(claims.user_id)
    return messaging, backends.call_options(request)


def _message_id(request: web.Request) -> int:
    message_id = inputs.id_value(request.match_info["message_id"], "message_id")
    if message_id > inputs.MAX_ID:
        raise NotFound(f"no message {message_id}")
    return message_id


async def readers(request: web.Request) -> web.Response:
    """Who has read the chat up to a message."""
    caller(request)
    chat_id = inputs.chat_id(request)
    message_id = min(inputs.id_value(request.match_info["message_id"], "message_id"), inputs.MAX_ID)
    backends = request.app[BACKENDS]
    reply = await backends.history.GetReaders(
        history_pb2.GetReadersRequest(chat_id=chat_id, message_id=message_id),
        **backends.call_options(request),
    )
    return web.json_response(views.readers(reply))


def send_request(chat_id: str, body: dict[str, Any]) -> messaging_pb2.SendRequest:
    """A send as HTTP and the WebSocket both take it, checked before it is routed."""
    return messaging_pb2.SendRequest(
        chat_id=chat_id,
        client_message_id=inputs.text(body, "client_message_id", maximum=64),
        body=inputs.text(body, "body", maximum=1_000_000),
        attachments=inputs.attachments(body),
    )
