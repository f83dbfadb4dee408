"""The OpenAPI 3.1 description of the BFF, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from bff.inputs import ID_PATTERN

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _ok(schema: str, status: str = "200") -> dict[str, Any]:
    return {
        status: {
            "description": "OK",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        },
        "4XX": _PROBLEM,
        "5XX": _PROBLEM,
    }


_ID = {"type": "string", "pattern": ID_PATTERN, "description": "64-bit id as a string"}


def _amended_responses() -> dict[str, Any]:
    return {**_ok("Sent", "201"), "200": {"description": "A retry: the same entry"}}


_CHAT_ID = {
    "type": "string",
    "pattern": "^(d:[0-9]{1,20}:[0-9]{1,20}|g:[0-9]{1,20})$",
    "description": "d:{smaller user id}:{larger user id} for a direct chat; g:{id} for a group",
}

_MESSAGE_PATH = [
    {"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID},
    {"name": "message_id", "in": "path", "required": True, "schema": _ID},
]
_GROUP_ID = {"type": "string", "pattern": "^g:[0-9]{1,20}$", "description": "g:{id}"}
_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
    "description": "1-100 characters, not blank, no control characters",
}
_REQUEST_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
    "description": "Chosen by the client, unique per caller: a retry with the same id makes no"
    " second change and answers the same (also accepted as the Idempotency-Key header)",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[!-~]+$"},
    "description": "What client_request_id is where the request has no body",
}
_GROUP_ROLES = (
    "Roles: the owner may do everything and alone gives or takes the admin role or hands the"
    " group over; an admin may rename, add members and remove members (not admins or the"
    " owner); a member may send, read, list the members and leave. Every change is an entry"
    " of the group's log (a Message with `change`), seen by everyone it concerns, and is"
    " answered once durable: from then on a removed member's sends are refused and they"
    " receive nothing newer. A change that would exceed the live config's"
    " `groups.max_members` (1,000 by default) is refused with 409."
)
_GROUP_PATH = [{"name": "chat_id", "in": "path", "required": True, "schema": _GROUP_ID}]
_MEMBER_PATH = [
    *_GROUP_PATH,
    {"name": "user_id", "in": "path", "required": True, "schema": _ID},
]

_CURSOR = {"type": "string", "maxLength": 64, "description": "an event's cursor, opaque"}
_TOO_MANY = {
    "description": "Too many attempts; retry after Retry-After seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": _PROBLEM_CONTENT,
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "chat-backend BFF", "version": "1"},
    # OpenAPI has no way to describe a WebSocket's messages; this is what one needs to know.
    "x-websocket": {
        "path": "/v1/stream/ws",
        "description": "Upgrade a GET of /v1/stream/ws to a WebSocket (a plain GET is answered"
        ' 426), then send `{"type": "hello", "access_token": ..., "cursor": ...}`'
        " within 10 s (the token is never in the URL). Events are JSON text frames, each a"
        ' LiveEvent, with the semantics of /v1/stream/sse. Sends: `{"type": "send",'
        ' "request_id", "chat_id", "client_message_id", "body"}`, answered `sent`'
        " (as POST /v1/chats/{chat_id}/messages answers) or `send_failed` (with the HTTP status"
        " it would have had). Close codes: 4000 too slow (reason `resume <cursor>`), 4400 a"
        " bad frame or a cursor the server cannot serve, 4500 a server failure (reconnect with"
        " the last cursor), 4401 unauthenticated (no hello, a bad token, the session ended,"
        " the token expired), 1009 a frame over 64 KiB. Pings every `web.heartbeat_seconds`;"
        " the page's Origin must be the BFF's own or in the live config's `web.allowed_origins`.",
    },
    "paths": {
        "/v1/users": {
            "get": {
                "summary": "Find a user by name",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "username",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,32}$"},
                    },
                ],
                "responses": _ok("User"),
            },
            "post": {
                "summary": "Register",
                "description": "Registrations are limited per client address (the `auth`"
                " section of the live config).",
                "requestBody": _json_body("Credentials"),
                "responses": {**_ok("User", "201"), "429": _TOO_MANY},
            },
        },
        "/v1/users/{user_id}": {
            "get": {
                "summary": "A user's name, display name and avatar id by id",
                "security": _AUTH,
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": _ID}],
                "responses": _ok("User"),
            }
        },
        "/v1/users/{user_id}/avatar": {
            "get": {
                "summary": "A short-lived download link for a user's avatar (any logged-in user)",
                "description": "404 when the user has none. The link changes with every call;"
                " a client keeps it until `expires_at_ms` and asks again when the user's"
                " `avatar_id` changes (a profile event tells).",
                "security": _AUTH,
                "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": _ID}],
                "responses": _ok("AttachmentLink"),
            }
        },
        "/v1/me/avatar": {
            "post": {
                "summary": "An upload for your picture",
                "description": "Answers a presigned URL of the object store: PUT the image"
                " there with the `headers` given, then `PUT /v1/me/profile` with its"
                " `avatar_id`. An image/png, image/jpeg, image/gif or image/webp of at most"
                " 5 MiB (and at most `files.max_bytes`). An upload never made the avatar is"
                " removed after `files.upload_ttl_seconds`.",
                "security": _AUTH,
                "requestBody": _json_body("AvatarUploadRequest"),
                "responses": _ok("Upload", "201"),
            }
        },
        "/v1/profiles": {
            "get": {
                "summary": "Several users' names, display names and avatar ids (those that exist)",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "user_ids",
                        "in": "query",
                        "required": True,
                        "description": "1 to 200 ids, comma-separated",
                        "schema": {
                            "type": "string",
                            "pattern": "^[1-9][0-9]{0,19}(,[1-9][0-9]{0,19}){0,199}$",
                        },
                    }
                ],
                "responses": _ok("Profiles"),
            }
        },
        "/v1/me/profile": {
            "put": {
                "summary": "Change your display name or avatar; your contacts' streams get a"
                " profile event",
                "description": "What is given changes, the rest stays. Recorded in the users log"
                " (a rebuild keeps it). An empty `display_name` clears it: clients then show the"
                " username. `avatar_id` names an upload from `POST /v1/me/avatar` whose bytes"
                " are stored (409 before that; 404 for anything else), or null to remove the"
                " picture; the picture it replaces is removed from the store.",
                "security": _AUTH,
                "requestBody": _json_body("ProfileChange"),
                "responses": _ok("User"),
            }
        },
        "/v1/me/password": {
            "put": {
                "summary": "Change your password; every other session of yours ends",
                "description": "403 when `current_password` is wrong (failures count against"
                " the same budget as failed logins). This session goes on; the others' tokens"
                " are refused and their streams end, as at a logout.",
                "security": _AUTH,
                "requestBody": _json_body("PasswordChange"),
                "responses": _ok("SessionsEnded"),
            }
        },
        "/v1/sessions": {
            "post": {
                "summary": "Log in",
                "description": "Failed logins are limited per username and per client address"
                " (the `auth` section of the live config); past either budget every login"
                " for it, right or wrong, answers 429 with Retry-After.",
                "requestBody": _json_body("Credentials"),
                "responses": {**_ok("Session", "201"), "429": _TOO_MANY},
            },
            "delete": {
                "summary": "Log out everywhere: end every session of the caller",
                "description": "Answers once every service applied it: from then on the"
                " sessions' access and refresh tokens are refused and their live streams"
                " have ended (UNAUTHENTICATED, saying why).",
                "security": _AUTH,
                "responses": _ok("SessionsEnded"),
            },
        },
        "/v1/sessions/current": {
            "delete": {
                "summary": "Log out: end the session of this access token",
                "description": "Answers once every service applied it: from then on the"
                " session's access and refresh tokens are refused and its live streams have"
                " ended (UNAUTHENTICATED, saying why). Other sessions of the user go on.",
                "security": _AUTH,
                "responses": {
                    "204": {"description": "The session has ended"},
                    "4XX": _PROBLEM,
                    "5XX": _PROBLEM,
                },
            }
        },
        "/v1/sessions/current/messaging-server": {
            "get": {
                "summary": "Where the caller's gRPC stream is now",
                "description": "The messaging server that feeds the caller's partition. A"
                " mobile client asks it when the server it holds its stream on stops"
                " answering (UNAVAILABLE several times in a row): the server died or is"
                " stopping, and its partitions move to the others within seconds. Any"
                " messaging server also refuses a Subscribe for a partition it does not feed"
                " with FAILED_PRECONDITION and the owner's address in the `chat-redirect`"
                " trailer, so dialling any of them leads to the right one.",
                "security": _AUTH,
                "responses": _ok("MessagingServer"),
            }
        },
        "/v1/sessions/refresh": {
            "post": {
                "summary": "Exchange a refresh token",
                "description": "Each refresh token yields the next one and is spent by it."
                " Of concurrent refreshes with one token exactly one rotates the session; for"
                " `sessions.refresh_reuse_seconds` of the live config (10 by default) after"
                " that, the token just spent is answered with the very same new tokens (a"
                " second tab, or a client retrying a refresh whose answer it lost), so every"
                " one of them carries on with one pair. A spent token presented later, or one"
                " spent before the last, is a replay: it is refused (401) and ends the whole"
                " session on every device.",
                "requestBody": _json_body("Refresh"),
                "responses": _ok("Session"),
            }
        },
        "/v1/stream/tickets": {
            "post": {
                "summary": "A single-use ticket for one SSE stream (valid 30 s)",
                "description": "So the access token never appears in a URL: open"
                " `/v1/stream/sse?ticket=...` with it.",
                "security": _AUTH,
                "responses": _ok("StreamTicket", "201"),
            }
        },
        "/v1/stream/sse": {
            "get": {
                "summary": "Live events as Server-Sent Events (the fallback to the WebSocket)",
                "description": "Each event's `id` is its cursor and its `event` its type"
                " (`message`, `caught_up`, `resync_required`, `resume_required`, `error`);"
                " `data` is the JSON of a LiveEvent. Resume with `Last-Event-ID` (or"
                " `?cursor=`): every missed event once, then `caught_up`, then live events."
                " A comment line every `web.heartbeat_seconds`. The stream ends after"
                " `resume_required` (too slow: reconnect with its cursor) and after `error`"
                " (the session ended or the token expired). A page's Origin must be the BFF's"
                " own or in the live config's `web.allowed_origins`.",
                "parameters": [
                    {
                        "name": "ticket",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                    {"name": "cursor", "in": "query", "schema": _CURSOR},
                    {"name": "Last-Event-ID", "in": "header", "schema": _CURSOR},
                ],
                "responses": {
                    "200": {
                        "description": "The event stream",
                        "content": {
                            "text/event-stream": {
                                "schema": {"$ref": "#/components/schemas/ServerSentEvent"}
                            }
                        },
                    },
                    "4XX": _PROBLEM,
                    "5XX": _PROBLEM,
                },
            }
        },
        "/v1/chats/direct": {
            "post": {
                "summary": "Open (or get) the direct chat with a user",
                "security": _AUTH,
                "requestBody": _json_body("DirectChatRequest"),
                "responses": _ok("Chat"),
            }
        },
        "/v1/chats": {
            "get": {
                "summary": "The caller's chats, newest first, a page at a time",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "description": "Chats per page (100 when not given)",
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "maxLength": 80,
                            "pattern": "^([0-9]{1,20}\\.(d|g):[0-9:]{1,45})?$",
                        },
                        "description": "`next_cursor` of the previous page (empty: the first)",
                    },
                ],
                "responses": _ok("ChatList"),
            }
        },
        "/v1/groups": {
            "post": {
                "summary": "Create a group; the caller is its owner",
                "description": _GROUP_ROLES,
                "security": _AUTH,
                "requestBody": _json_body("CreateGroup"),
                "responses": _ok("Group", "201"),
            }
        },
        "/v1/groups/{chat_id}": {
            "parameters": _GROUP_PATH,
            "get": {
                "summary": "The group and its members (members only)",
                "security": _AUTH,
                "responses": _ok("Group"),
            },
            "patch": {
                "summary": "Rename the group (owner or admin)",
                "security": _AUTH,
                "requestBody": _json_body("RenameGroup"),
                "responses": _ok("Group"),
            },
        },
        "/v1/groups/{chat_id}/members": {
            "parameters": _GROUP_PATH,
            "post": {
                "summary": "Add members (owner or admin); adding a member again changes nothing",
                "security": _AUTH,
                "requestBody": _json_body("AddMembers"),
                "responses": _ok("Group"),
            },
        },
        "/v1/groups/{chat_id}/members/{user_id}": {
            "parameters": _MEMBER_PATH,
            "delete": {
                "summary": "Remove a member; your own id: leave the group",
                "description": "The owner removes anyone, an admin only members. An owner who"
                " leaves hands the group to the longest-serving admin (else member).",
                "security": _AUTH,
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": _ok("Group"),
            },
        },
        "/v1/groups/{chat_id}/members/{user_id}/role": {
            "parameters": _MEMBER_PATH,
            "put": {
                "summary": "Give a member a role (owner only); `owner` hands the group over",
                "security": _AUTH,
                "requestBody": _json_body("SetRole"),
                "responses": _ok("Group"),
            },
        },
        "/v1/chats/{chat_id}/read": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "post": {
                "summary": "Mark the chat read up to a message",
                "description": "The read watermark never moves backwards (an older id changes"
                " nothing). The caller's other devices get a `receipt` event at once, the chat's"
                " other members one per reader per second at most; unread counts in the chat"
                " list count only what is newer.",
                "security": _AUTH,
                "requestBody": _json_body("MarkRead"),
                "responses": {"204": {"description": "Marked"}, "4XX": _PROBLEM, "5XX": _PROBLEM},
            },
        },
        "/v1/chats/{chat_id}/delivered": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "post": {
                "summary": "Mark the chat received (by one of your devices) up to a message",
                "description": "The one tick to `read`'s two: same rules (never backwards; a"
                " read mark implies this one), `receipt` events with `delivered_up_to`.",
                "security": _AUTH,
                "requestBody": _json_body("MarkRead"),
                "responses": {"204": {"description": "Marked"}, "4XX": _PROBLEM, "5XX": _PROBLEM},
            },
        },
        "/v1/chats/{chat_id}/messages/{message_id}": {
            "parameters": _MESSAGE_PATH,
            "patch": {
                "summary": "Edit your message (within the edit window)",
                "description": "An entry of the chat's log: every member's stream gets a `message`"
                " event whose `amendment` says `edited` (its `body` is the new text); history"
                " shows the message with the new text and `edited_at_ms`. Only the sender, within"
                " the live config's `messages.edit_window_seconds` (900 by default) of sending;"
                " later, or on a deleted message: 409. Answers the entry's id (201; 200 for a"
                " retry with the same `client_request_id` or Idempotency-Key).",
                "security": _AUTH,
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": _json_body("EditRequest"),
                "responses": _amended_responses(),
            },
            "delete": {
                "summary": "Delete a message (its sender, or a group's owner or admin)",
                "description": "History keeps a tombstone (`deleted: true`, who wrote it and when)"
                " and drops the text and reactions; members' streams get a `deleted` amendment.",
                "security": _AUTH,
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": _amended_responses(),
            },
        },
        "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}": {
            "parameters": [
                *_MESSAGE_PATH,
                {
                    "name": "emoji",
                    "in": "path",
                    "required": True,
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 8,
                        "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f]+$",
                    },
                    "description": "One emoji (URL-encoded; at most 32 bytes of UTF-8)",
                },
            ],
            "put": {
                "summary": "Add your reaction (one per user per emoji: adding again counts once)",
                "security": _AUTH,
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": _amended_responses(),
            },
            "delete": {
                "summary": "Take your reaction back",
                "security": _AUTH,
                "parameters": [_IDEMPOTENCY_KEY],
                "responses": _amended_responses(),
            },
        },
        "/v1/chats/{chat_id}/typing": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "post": {
                "summary": "Tell the chat's other members you are typing (or stopped)",
                "description": "Ephemeral (never stored): the others get a `typing` event valid"
                " until its `expires_at_ms` (live config `messages.typing_seconds`, 6 by"
                " default). Forwarded at most once per half of that per chat; more than 10 calls"
                " a second: 429.",
                "security": _AUTH,
                "requestBody": {**_json_body("TypingRequest"), "required": False},
                "responses": {"204": {"description": "Told"}, "4XX": _PROBLEM, "5XX": _PROBLEM},
            },
        },
        "/v1/presence": {
            "get": {
                "summary": "Whether people you share a chat with are online, and last seen",
                "description": "Online means a live stream on any server. Changes also arrive as"
                " `presence` events (from people sharing a direct chat or a group of at most 100"
                " with you). Anyone you share no chat with: 403.",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "user_ids",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": "^[1-9][0-9]{0,18}(,[1-9][0-9]{0,18}){0,199}$",
                        },
                        "description": "Up to 200 user ids, comma-separated",
                    }
                ],
                "responses": _ok("PresenceList"),
            }
        },
        "/v1/blocks": {
            "get": {
                "summary": "The people you blocked, newest first",
                "description": "Clients hide what these people say in groups (blocking does not"
                " change a group: it is shown or hidden by the client, from this list).",
                "security": _AUTH,
                "responses": _ok("BlockedList"),
            }
        },
        "/v1/blocks/{user_id}": {
            "parameters": [{"name": "user_id", "in": "path", "required": True, "schema": _ID}],
            "put": {
                "summary": "Block someone (blocking twice changes nothing)",
                "description": "From the answer on, on every server, they cannot open a direct chat"
                " with you nor send in one: they get the same 403 a stranger gets, so the block"
                " is not revealed. You cannot send there either until you unblock them. Yourself:"
                " 403; nobody by that id: 404.",
                "security": _AUTH,
                "responses": {"204": {"description": "Blocked"}, "4XX": _PROBLEM, "5XX": _PROBLEM},
            },
            "delete": {
                "summary": "Unblock someone (unblocking someone not blocked changes nothing)",
                "security": _AUTH,
                "responses": {
                    "204": {"description": "Unblocked"},
                    "4XX": _PROBLEM,
                    "5XX": _PROBLEM,
                },
            },
        },
        "/v1/me/notifications": {
            "get": {
                "summary": "Your notification settings",
                "security": _AUTH,
                "responses": _ok("NotificationSettings"),
            },
            "put": {
                "summary": "Choose what notifications (sent while you are offline) carry",
                "security": _AUTH,
                "requestBody": _json_body("NotificationSettings"),
                "responses": _ok("NotificationSettings"),
            },
        },
        "/v1/chats/{chat_id}/attachments": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "post": {
                "summary": "An upload for a file to send in the chat (members who may send)",
                "description": "Answers a presigned URL of the object store: PUT the bytes there,"
                " before `expires_at_ms`, with the `headers` given (the store refuses another"
                " size or type), then send a message naming `attachment_id` in `attachments`."
                " `size` is at most the live config's `files.max_bytes` (25 MiB by default). An"
                " upload no message names within `files.upload_ttl_seconds` is removed.",
                "security": _AUTH,
                "requestBody": _json_body("UploadRequest"),
                "responses": _ok("Upload", "201"),
            },
        },
        "/v1/chats/{chat_id}/messages/{message_id}/attachments/{attachment_id}": {
            "parameters": [
                *_MESSAGE_PATH,
                {"name": "attachment_id", "in": "path", "required": True, "schema": _ID},
            ],
            "get": {
                "summary": "A short-lived download link for a message's file",
                "description": "For those who can read the message (a group's members within"
                " their window). 404 once the message is deleted; 503 with Retry-After for the"
                " moment between a send and its file being recorded.",
                "security": _AUTH,
                "responses": _ok("AttachmentLink"),
            },
        },
        "/v1/chats/{chat_id}/messages/{message_id}/readers": {
            "parameters": [
                {"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID},
                {"name": "message_id", "in": "path", "required": True, "schema": _ID},
            ],
            "get": {
                "summary": "Who has read the chat up to this message (members only)",
                "security": _AUTH,
                "responses": _ok("Readers"),
            },
        },
        "/v1/chats/{chat_id}/search": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "get": {
                "summary": "Find messages of a chat by their words, newest first",
                "description": "The caller's visible messages (as the history shows them) whose"
                " current text holds every word of `q`. A word is a run of letters, digits and"
                " underscores; case and accents are ignored and whole words match (`cat` does not"
                " find `cats`). Only the first 8 distinct words of `q` are asked; a `q` without"
                " a word finds nothing. Deleted messages never match, edited ones by their"
                " current text. Page on with `before` set to the last message's id while"
                " `has_more` is true; `limit` as for history.",
                "security": _AUTH,
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    },
                    {"name": "before", "in": "query", "schema": _ID},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": _ok("Page"),
            },
        },
        "/v1/chats/{chat_id}/messages": {
            "parameters": [{"name": "chat_id", "in": "path", "required": True, "schema": _CHAT_ID}],
            "get": {
                "summary": "A page of history by message-id cursor",
                "description": "Newest first before `before` (or the newest page); with `after`,"
                " oldest first after it (and before `before` when both are given). `limit` is"
                " at most the live config's `limits.history_page_max` (200 by default).",
                "security": _AUTH,
                "parameters": [
                    {"name": "before", "in": "query", "schema": _ID},
                    {"name": "after", "in": "query", "schema": _ID},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
                "responses": _ok("Page"),
            },
            "post": {
                "summary": "Send; retry with the same client_message_id is safe",
                "security": _AUTH,
                "requestBody": _json_body("SendRequest"),
                "responses": {
                    **_ok("Sent", "201"),
                    "200": {"description": "A retry of an accepted message"},
                    "429": {
                        "description": "Over the per-user send rate (limits section of the live"
                        " config); retry after Retry-After seconds with the same"
                        " client_message_id",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": _PROBLEM_CONTENT,
                    },
                },
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "responses": {
            "Problem": {
                "description": "RFC 9457 problem details naming what is wrong",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            },
            "Credentials": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9_.-]{3,32}$",
                        "description": "Compared and stored Unicode-normalised (NFKC) and in lower"
                        " case: names that differ only so are the same name",
                    },
                    "password": {"type": "string", "minLength": 8, "maxLength": 256},
                },
            },
            "Refresh": {
                "type": "object",
                "required": ["refresh_token"],
                "properties": {"refresh_token": {"type": "string", "maxLength": 200}},
            },
            "User": {
                "type": "object",
                "properties": {
                    "user_id": _ID,
                    "username": {"type": "string"},
                    "display_name": {"type": "string", "description": "Empty: show the username"},
                    "avatar_id": {
                        "oneOf": [_ID, {"type": "null"}],
                        "description": "Their picture (GET /v1/users/{user_id}/avatar); null: none",
                    },
                },
            },
            "Profiles": {
                "type": "object",
                "properties": {
                    "profiles": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}
                },
            },
            "ProfileChange": {
                "type": "object",
                "minProperties": 1,
                "description": "One or both of the fields",
                "properties": {
                    "display_name": {
                        "type": "string",
                        "maxLength": 64,
                        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
                    },
                    "avatar_id": {
                        "oneOf": [_ID, {"type": "null"}],
                        "description": "An upload of POST /v1/me/avatar; null removes the picture",
                    },
                },
            },
            "AvatarUploadRequest": {
                "type": "object",
                "required": ["size", "content_type"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 5242880},
                    "content_type": {
                        "enum": ["image/png", "image/jpeg", "image/gif", "image/webp"]
                    },
                },
            },
            "PasswordChange": {
                "type": "object",
                "required": ["current_password", "new_password"],
                "properties": {
                    "current_password": {"type": "string", "maxLength": 256},
                    "new_password": {"type": "string", "minLength": 8, "maxLength": 256},
                },
            },
            "ServerSentEvent": {
                "type": "object",
                "description": "One event of the stream; `data` is a LiveEvent as JSON",
                "properties": {
                    "event": {"type": "string"},
                    "data": {"type": "string", "contentMediaType": "application/json"},
                    "id": {"type": "string"},
                },
            },
            "StreamTicket": {
                "type": "object",
                "properties": {
                    "ticket": {"type": "string"},
                    "expires_in": {"type": "integer"},
                },
            },
            "LiveEvent": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {
                        "enum": [
                            "message",
                            "caught_up",
                            "resync_required",
                            "resume_required",
                            "error",
                            "sent",
                            "send_failed",
                            "receipt",
                            "typing",
                            "presence",
                        ]
                    },
                    "cursor": {
                        "type": "string",
                        "description": "Resume from here; typing and presence events (not in"
                        " the log, not replayed) carry the stream's position when they came",
                    },
                    "message": {"$ref": "#/components/schemas/Message"},
                    "receipt": {"$ref": "#/components/schemas/Receipt"},
                    "typing": {"$ref": "#/components/schemas/Typing"},
                    "presence": {"$ref": "#/components/schemas/Presence"},
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
            "SessionsEnded": {
                "type": "object",
                "properties": {"sessions_ended": {"type": "integer", "minimum": 0}},
            },
            "Session": {
                "type": "object",
                "properties": {
                    "user_id": _ID,
                    "access_token": {"type": "string"},
                    "token_type": {"const": "Bearer"},
                    "expires_in": {"type": "integer"},
                    "refresh_token": {"type": "string"},
                    "messaging_server": {
                        "type": "string",
                        "description": "host:port of the gRPC server for this user's stream",
                    },
                },
            },
            "MessagingServer": {
                "type": "object",
                "required": ["messaging_server"],
                "properties": {
                    "messaging_server": {
                        "type": "string",
                        "description": "host:port of the gRPC server for this user's stream",
                    },
                },
            },
            "DirectChatRequest": {
                "type": "object",
                "description": "The peer by id or by username (the id wins when both are given)",
                "properties": {
                    "peer_id": _ID,
                    "peer_username": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,32}$"},
                },
                "anyOf": [{"required": ["peer_id"]}, {"required": ["peer_username"]}],
            },
            "Chat": {
                "type": "object",
                "properties": {
                    "chat_id": {"type": "string"},
                    "kind": {"type": "string"},
                    "member_ids": {"type": "array", "items": _ID},
                },
            },
            "ChatList": {
                "type": "object",
                "properties": {
                    "next_cursor": {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "description": "Give it as `cursor` for the next page; null on the last",
                    },
                    "chats": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "chat_id": {"type": "string"},
                                "kind": {"type": "string"},
                                "member_ids": {"type": "array", "items": _ID},
                                "last_message_id": {"anyOf": [_ID, {"type": "null"}]},
                                "last_sender_id": {"anyOf": [_ID, {"type": "null"}]},
                                "last_preview": {"type": "string"},
                                "unread_count": {"type": "integer"},
                                "name": {
                                    "type": "string",
                                    "description": "A group's name; empty for direct chats",
                                },
                                "member": {
                                    "type": "boolean",
                                    "description": "False once the caller left or was removed"
                                    " from the group (what they could read stays readable)",
                                },
                            },
                        },
                    },
                },
            },
            "Message": {
                "type": "object",
                "properties": {
                    "message_id": _ID,
                    "chat_id": {"type": "string"},
                    "sender_id": _ID,
                    "body": {"type": "string"},
                    "client_message_id": {"type": "string"},
                    "created_at_ms": {"type": "integer"},
                    "change": {"$ref": "#/components/schemas/ChatChange"},
                    "amendment": {"$ref": "#/components/schemas/Amendment"},
                    "edited_at_ms": {
                        "type": "integer",
                        "description": "History: when the text was last edited (absent: never)",
                    },
                    "deleted": {
                        "type": "boolean",
                        "description": "History: a tombstone; `body` is empty",
                    },
                    "reactions": {
                        "type": "array",
                        "description": "History: the reactions now, the most used first",
                        "items": {
                            "type": "object",
                            "properties": {
                                "emoji": {"type": "string"},
                                "count": {"type": "integer", "minimum": 1},
                                "mine": {"type": "boolean"},
                            },
                        },
                    },
                    "attachments": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Attachment"},
                    },
                },
            },
            "Amendment": {
                "type": "object",
                "description": "Present (in streams) when the entry amends an earlier message;"
                " `sender_id` is who amended it and, for `edited`, `body` is the new text. Apply"
                " them in order: the state they give is what history shows.",
                "properties": {
                    "action": {"enum": ["edited", "deleted", "reaction_added", "reaction_removed"]},
                    "message_id": _ID,
                    "message_sender_id": _ID,
                    "emoji": {"type": "string"},
                },
            },
            "EditRequest": {
                "type": "object",
                "required": ["body"],
                "properties": {
                    "body": {
                        "type": "string",
                        "pattern": "\\S",
                        "description": "The new text: not blank; at most the live config's"
                        " `limits.max_body_bytes` bytes of UTF-8",
                    },
                    "client_request_id": _REQUEST_ID,
                },
            },
            "TypingRequest": {
                "type": "object",
                "properties": {
                    "stopped": {
                        "type": "boolean",
                        "description": "True: tell the others you stopped (default false)",
                    }
                },
            },
            "Typing": {
                "type": "object",
                "description": "`user_id` is typing in `chat_id` until `expires_at_ms` (unless"
                " told again), or `stopped`",
                "properties": {
                    "chat_id": {"type": "string"},
                    "user_id": _ID,
                    "stopped": {"type": "boolean"},
                    "expires_at_ms": {"type": "integer"},
                },
            },
            "Presence": {
                "type": "object",
                "properties": {
                    "user_id": _ID,
                    "online": {"type": "boolean"},
                    "last_seen_ms": {
                        "anyOf": [{"type": "integer"}, {"type": "null"}],
                        "description": "When the last stream ended; null while online or never",
                    },
                },
            },
            "BlockedList": {
                "type": "object",
                "required": ["blocked"],
                "properties": {
                    "blocked": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["user_id", "blocked_at_ms"],
                            "properties": {
                                "user_id": _ID,
                                "blocked_at_ms": {"type": "integer"},
                            },
                        },
                    }
                },
            },
            "PresenceList": {
                "type": "object",
                "properties": {
                    "presences": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Presence"},
                    }
                },
            },
            "NotificationSettings": {
                "type": "object",
                "required": ["previews"],
                "additionalProperties": False,
                "properties": {
                    "previews": {
                        "type": "boolean",
                        "description": "Whether notifications carry the message's first words",
                    }
                },
            },
            "Receipt": {
                "type": "object",
                "description": "`user_id` has received `chat_id` up to `delivered_up_to` and"
                ' read it up to `read_up_to` ("0" in a delivery receipt)',
                "properties": {
                    "chat_id": {"type": "string"},
                    "user_id": _ID,
                    "read_up_to": {"type": "string"},
                    "delivered_up_to": _ID,
                },
            },
            "Readers": {
                "type": "object",
                "properties": {
                    "readers": {
                        "type": "array",
                        "description": "Members who read up to the message",
                        "items": {"$ref": "#/components/schemas/Reader"},
                    },
                    "delivered": {
                        "type": "array",
                        "description": "Members whose devices received it, not read yet",
                        "items": {"$ref": "#/components/schemas/Reader"},
                    },
                },
            },
            "Reader": {
                "type": "object",
                "properties": {
                    "user_id": _ID,
                    "read_up_to": {"type": "string"},
                    "delivered_up_to": {"type": "string"},
                },
            },
            "MarkRead": {
                "type": "object",
                "required": ["message_id"],
                "properties": {"message_id": _ID},
            },
            "ChatChange": {
                "type": "object",
                "description": "Present when the entry is a change to the group; `body` then says"
                " it in words and `sender_id` is who made it",
                "properties": {
                    "action": {
                        "enum": ["created", "renamed", "added", "removed", "left", "role_changed"]
                    },
                    "name": {"type": "string", "description": "The group's name after it"},
                    "user_ids": {"type": "array", "items": _ID},
                    "role": {"type": "string"},
                    "version": {"type": "integer"},
                },
            },
            "Group": {
                "type": "object",
                "properties": {
                    "chat_id": _GROUP_ID,
                    "kind": {"const": "group"},
                    "name": {"type": "string"},
                    "version": {"type": "integer", "description": "Grows by one per change"},
                    "change_id": {
                        "anyOf": [_ID, {"type": "null"}],
                        "description": "The log entry this call made (the same on a retry);"
                        " null when it changed nothing",
                    },
                    "members": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "user_id": _ID,
                                "role": {"enum": ["owner", "admin", "member"]},
                                "since_id": _ID,
                            },
                        },
                    },
                },
            },
            "CreateGroup": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _NAME,
                    "member_ids": {
                        "type": "array",
                        "items": _ID,
                        "maxItems": 1000,
                        "description": "Existing users besides the caller",
                    },
                    "client_request_id": _REQUEST_ID,
                },
            },
            "RenameGroup": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _NAME, "client_request_id": _REQUEST_ID},
            },
            "AddMembers": {
                "type": "object",
                "required": ["user_ids"],
                "properties": {
                    "user_ids": {"type": "array", "items": _ID, "minItems": 1, "maxItems": 1000},
                    "client_request_id": _REQUEST_ID,
                },
            },
            "SetRole": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["owner", "admin", "member"]},
                    "client_request_id": _REQUEST_ID,
                },
            },
            "Page": {
                "type": "object",
                "properties": {
                    "messages": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Message"},
                    },
                    "has_more": {"type": "boolean"},
                },
            },
            "UploadRequest": {
                "type": "object",
                "required": ["name", "size", "content_type"],
                "properties": {
                    "name": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 255,
                        "pattern": "^[^/\\x00-\\x1f]+$",
                        "description": "The file's name (no '/' or control characters)",
                    },
                    "size": {"type": "integer", "minimum": 1, "maximum": 26214400},
                    "content_type": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/"
                        "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}$",
                        "description": "Its media type, e.g. image/png",
                    },
                },
            },
            "Upload": {
                "type": "object",
                "properties": {
                    "attachment_id": _ID,
                    "method": {"enum": ["PUT"]},
                    "url": {"type": "string"},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "expires_at_ms": {"type": "integer"},
                },
            },
            "Attachment": {
                "type": "object",
                "properties": {
                    "attachment_id": _ID,
                    "name": {"type": "string"},
                    "size": {"type": "integer"},
                    "content_type": {"type": "string"},
                    "sha256": {"type": "string", "description": "As the uploader computed it"},
                    "width": {"type": "integer", "description": "Images: pixels, if told"},
                    "height": {"type": "integer"},
                },
            },
            "AttachmentLink": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "GET the bytes here"},
                    "expires_at_ms": {"type": "integer"},
                    "attachment": {"$ref": "#/components/schemas/Attachment"},
                },
            },
            "SendRequest": {
                "type": "object",
                "required": ["client_message_id", "body"],
                "properties": {
                    "client_message_id": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 64,
                        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$",
                        "description": "Chosen by the client, unique per sender and chat: the key"
                        " that makes a retry safe (no control characters)",
                    },
                    "body": {
                        "type": "string",
                        "pattern": "\\S",
                        "description": "Not blank; at most the live config's"
                        " `limits.max_body_bytes` bytes of UTF-8 (4,096 by default). With"
                        " attachments: a caption, or the file's name",
                    },
                    "attachments": {
                        "type": "array",
                        "maxItems": 10,
                        "description": "Uploads of yours for this chat (POST .../attachments),"
                        " each in one message only",
                        "items": {
                            "type": "object",
                            "required": ["attachment_id"],
                            "properties": {
                                "attachment_id": _ID,
                                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                "width": {"type": "integer", "minimum": 0, "maximum": 100000},
                                "height": {"type": "integer", "minimum": 0, "maximum": 100000},
                            },
                        },
                    },
                },
            },
            "Sent": {
                "type": "object",
                "properties": {
                    "message_id": _ID,
                    "created_at_ms": {"type": "integer"},
                    "duplicate": {"type": "boolean"},
                },
            },
        },
    },
}
