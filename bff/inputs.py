"""Checking what a request carries, before anything is done with it.

Every value that comes from a client passes through here: JSON bodies, strings, ids, query
parameters, usernames. Each check either returns a value the rest of the BFF (and the gRPC
services behind it) can use as is, or raises InvalidArgument naming the field and the rule, so
no input reaches a backend that could fail on it.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from typing import Any

from aiohttp import web

from chatlib.errors import InvalidArgument, NotFound
from protos.chat.v1 import common_pb2

MAX_ID = 2**64 - 1
#: Ids are 1-20 decimal digits without a leading zero (what the OpenAPI document says).
ID_PATTERN = "^[1-9][0-9]{0,19}$"
#: The largest page a client may ask for (the live limits can only lower it).
MAX_PAGE = 1000
#: A search's query, in characters (history's SearchMessages takes as many).
MAX_QUERY = 200
_ID = re.compile(r"[1-9][0-9]{0,19}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_ATTACHMENTS = 10
_USERNAME = re.compile(r"[a-z0-9_.-]{3,32}")
USERNAME_RULE = "3-32 characters of a-z, 0-9, '_', '.', '-'"


async def optional_json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or {} for a request without a body."""
    if not request.body_exists:
        return {}
    return await json_object(request)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (its size is bounded by the app's client_max_size)."""
    if request.content_type != "application/json":
        raise InvalidArgument("send a JSON body with Content-Type: application/json")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument("body must be a JSON object")
    return body


def text(body: dict[str, Any], field: str, *, maximum: int, minimum: int = 0) -> str:
    """A string field, valid Unicode, of ``minimum``-``maximum`` characters."""
    value = body.get(field)
    if not isinstance(value, str):
        raise InvalidArgument(f"field {field!r} must be a string")
    return checked(value, field, maximum=maximum, minimum=minimum)


def checked(value: str, field: str, *, maximum: int, minimum: int = 0) -> str:
    if len(value) > maximum:
        raise InvalidArgument(f"field {field!r} is longer than {maximum} characters")
    if len(value) < minimum:
        raise InvalidArgument(f"field {field!r} needs at least {minimum} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"field {field!r} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return value


def id_value(raw: str, field: str) -> int:
    """A 64-bit id given as decimal digits (the ids clients see are strings). Twenty digits can
    say more than 64 bits hold: such a value is returned as is, and callers decide what an id
    that cannot exist means (no user has it; every message is older than it)."""
    if not _ID.fullmatch(raw):
        raise InvalidArgument(f"{field} must be an id: 1-20 decimal digits, no leading zero")
    return int(raw)


def id_field(body: dict[str, Any], field: str) -> int:
    return id_value(text(body, field, maximum=20), f"field {field!r}")


def cursor_query(request: web.Request, name: str) -> int:
    """A message-id cursor query parameter (``before``, ``after``), or 0 when it is absent;
    one beyond every possible id is the largest possible id."""
    if name not in request.query:
        return 0
    return min(id_value(request.query[name], f"query parameter {name!r}"), MAX_ID)


def limit_query(request: web.Request) -> int:
    """The ``limit`` query parameter, or 0 (the service's default) when it is absent."""
    raw = request.query.get("limit", "")
    if not raw:
        return 0
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidArgument(
            f"query parameter 'limit' must be a whole number from 1 to {MAX_PAGE}"
        )
    return int(raw)


def whole(value: Any, what: str) -> int:
    """A JSON integer (``216`` or ``216.0``: JSON has one kind of number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{what} must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidArgument(f"{what} must be a whole number")
    return int(value)


def attachments(body: dict[str, Any]) -> list[common_pb2.Attachment]:
    """A send's ``attachments``: at most 10 of {attachment_id, sha256?, width?, height?}."""
    given = body.get("attachments", [])
    if not isinstance(given, list) or len(given) > MAX_ATTACHMENTS:
        raise InvalidArgument(f"field 'attachments' must be a list of at most {MAX_ATTACHMENTS}")
    found = []
    for item in given:
        if not isinstance(item, dict):
            raise InvalidArgument("each of 'attachments' must be an object")
        pixels = {}
        for side in ("width", "height"):
            value = whole(item.get(side, 0), f"attachment field {side!r}")
            if not 0 <= value <= 100_000:
                raise InvalidArgument(f"attachment field {side!r} must be 0 to 100000 pixels")
            pixels[side] = value
        digest = item.get("sha256", "")
        if not isinstance(digest, str) or (digest and not _SHA256.fullmatch(digest)):
            raise InvalidArgument("attachment field 'sha256' must be 64 lowercase hex digits")
        attachment_id = id_field(item, "attachment_id")
        if attachment_id >= 2**64:
            raise NotFound(f"no upload {attachment_id}")
        found.append(
            common_pb2.Attachment(
                attachment_id=attachment_id,
                sha256=digest,
                width=pixels["width"],
                height=pixels["height"],
            )
        )
    return found


def username(raw: str, field: str = "username") -> str:
    """A username as it is stored: Unicode-normalised (NFKC) and lower case, so that names
    that look alike are the same name; it must then match the whole rule."""
    normal = unicodedata.normalize("NFKC", checked(raw, field, maximum=64)).lower()
    if not _USERNAME.fullmatch(normal):
        raise InvalidArgument(f"{field} must be {USERNAME_RULE}")
    return normal


def request_id(request: web.Request, body: dict[str, Any]) -> str:
    """The idempotency key of a change: the body's ``client_request_id``, else the
    ``Idempotency-Key`` header, else a fresh one (the call is then not safe to retry)."""
    if "client_request_id" in body:
        return text(body, "client_request_id", maximum=64, minimum=1)
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        return checked(header, "Idempotency-Key", maximum=64, minimum=1)
    return uuid.uuid4().hex


def chat_id(request: web.Request) -> str:
    """The ``{chat_id}`` of the request's path (its form is checked where it is used)."""
    return checked(request.match_info["chat_id"], "chat_id", maximum=64)
