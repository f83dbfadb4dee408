"""The admin HTTP API: read a section, replace it, read its audit trail; kick a user.

Every request needs ``Authorization: Bearer <admin token>``; the token's name is recorded as
who made a change. A replace may carry ``If-Match: <version>`` to refuse a change based on a
stale read (HTTP 412 when the section moved on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from chatlib import ops, problems
from chatlib.config_checks import InvalidConfig
from chatlib.config_sections import PARSERS
from chatlib.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from chatlib.live_config import Document
from config_service import kicks
from config_service.settings import find_operator
from config_service.store import ConfigStore, VersionConflict

STORE = web.AppKey("store", ConfigStore)
TOKENS = web.AppKey("tokens", Mapping[str, str])
REDIS = web.AppKey("redis", aioredis.Redis)
MAX_BODY = 256 * 1024


class PreconditionFailed(FailedPrecondition):
    """Mapped to 412: If-Match named a version that is no longer current."""


def create_app(
    store: ConfigStore, tokens: Mapping[str, str], client: aioredis.Redis
) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[ops.http_metrics, problems.middleware, _conflicts]
    )
    app[STORE] = store
    app[REDIS] = client
    app[TOKENS] = tokens
    app.router.add_get("/v1/config", get_all)
    app.router.add_get("/v1/config/{section}", get_section)
    app.router.add_put("/v1/config/{section}", put_section)
    app.router.add_get("/v1/config/{section}/history", get_history)
    app.router.add_post("/v1/admin/users/{user_id}/kick", kick_user)
    app.router.add_get("/v1/admin/audit/kicks", get_kicks)
    return app


def _operator(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the admin credential as 'Authorization: Bearer <token>'")
    operator = find_operator(request.app[TOKENS], token.strip())
    if operator is None:
        raise Unauthenticated("the admin credential is not valid")
    return operator


def _section(request: web.Request) -> str:
    section = request.match_info["section"]
    if section not in PARSERS:
        raise NotFound(f"unknown section {section!r} (sections: {', '.join(sorted(PARSERS))})")
    return section


def _view(document: Document, changed: bool | None = None) -> web.Response:
    body: dict[str, Any] = json.loads(document.to_json())
    if changed is not None:
        body["changed"] = changed
    response = web.json_response(body)
    response.headers["ETag"] = f'"{document.version}"'
    return response


async def get_all(request: web.Request) -> web.Response:
    _operator(request)
    store = request.app[STORE]
    found = {}
    for section in sorted(PARSERS):
        document = await store.get(section)
        found[section] = json.loads(document.to_json()) if document is not None else None
    return web.json_response(found)


async def get_section(request: web.Request) -> web.Response:
    _operator(request)
    section = _section(request)
    document = await request.app[STORE].get(section)
    if document is None:
        raise NotFound(f"section {section!r} has not been set; run python -m config_service seed")
    return _view(document)


async def put_section(request: web.Request) -> web.Response:
    operator = _operator(request)
    section = _section(request)
    value = await _json(request)
    expected = _if_match(request.headers.get("If-Match"))
    try:
        outcome = await request.app[STORE].replace(
            section, value, by=operator, expected_version=expected
        )
    except InvalidConfig as exc:
        raise InvalidArgument(str(exc)) from None
    except VersionConflict as exc:
        raise PreconditionFailed(str(exc)) from None
    return _view(outcome.document, outcome.changed)


async def get_history(request: web.Request) -> web.Response:
    _operator(request)
    section = _section(request)
    entries = await request.app[STORE].history(section, _limit(request))
    return web.json_response({"section": section, "entries": entries})


async def kick_user(request: web.Request) -> web.Response:
    """End every session of a user now; body ``{"reason": "..."}``; audited."""
    operator = _operator(request)
    user_id = kicks.user_id(request)
    body = await _json(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise InvalidArgument('send {"reason": "..."}: why (1-500 characters, audited)')
    entry = await kicks.kick(request.app[REDIS], operator, user_id, reason.strip())
    return web.json_response(entry)


async def get_kicks(request: web.Request) -> web.Response:
    _operator(request)
    return web.json_response({"entries": await kicks.trail(request.app[REDIS], _limit(request))})


async def _json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise InvalidArgument("send JSON with Content-Type: application/json")
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidArgument(f"body is not valid JSON: {exc}") from None


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidArgument("query parameter 'limit' must be between 1 and 1000")
    return int(raw)


def _if_match(header: str | None) -> int | None:
    if header is None:
        return None
    raw = header.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise InvalidArgument(f'If-Match must be a section version like "3", got {header!r}')
    return int(raw)


@web.middleware
async def _conflicts(request: web.Request, handler: problems.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PreconditionFailed as exc:
        return problems.problem(412, "precondition failed", str(exc))
    except (aioredis.RedisError, OSError) as exc:
        # Nothing was stored: the script either ran whole or not at all.
        raise Unavailable(f"the config store (Redis) is unavailable: {exc}") from None
