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
_CHAT_ID = {
    "type": "string",
    "pattern": "^(d:[0-9]{1,20}:[0-9]{1,20}|g:[0-9]{1,20})$",
    "description": "d:{smaller user id}:{larger user id} for a direct chat; g:{id} for a group",
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "chat-backend BFF", "version": "1"},
    "paths": {
        "/v1/users": {
            "post": {
                "summary": "Register",
                "requestBody": _json_body("Credentials"),
                "responses": _ok("User", "201"),
            }
        },
        "/v1/sessions": {
            "post": {
                "summary": "Log in",
                "requestBody": _json_body("Credentials"),
                "responses": _ok("Session", "201"),
            }
        },
        "/v1/sessions/refresh": {
            "post": {
                "summary": "Exchange a refresh token",
                "requestBody": _json_body("Refresh"),
                "responses": _ok("Session"),
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
                "summary": "The caller's chats, newest first",
                "security": _AUTH,
                "responses": _ok("ChatList"),
            }
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
                "properties": {"user_id": _ID, "username": {"type": "string"}},
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
                            },
                        },
                    }
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
                        " `limits.max_body_bytes` bytes of UTF-8 (4,096 by default)",
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
