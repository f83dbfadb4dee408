"""Errors as problem+json (RFC 9457): the one place HTTP services turn errors into responses."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence

import grpc
import redis
from aiohttp import web

from chatlib import errors

logger = logging.getLogger(__name__)

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    # A backend that cancels a call is stopping (its grace ran out): the caller may retry
    # elsewhere. (A call this side cancelled never gets here.)
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def problem(status: int, title: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )


def from_code(
    code: grpc.StatusCode, detail: str, metadata: Sequence[tuple[str, str | bytes]] = ()
) -> web.Response:
    status = HTTP_STATUS.get(code, 502)
    response = problem(status, code.name.replace("_", " ").lower(), detail)
    for key, value in metadata:
        if key == errors.RETRY_AFTER_KEY:
            # Whole seconds, rounded up, as HTTP wants; the exact delay is in the detail.
            response.headers["Retry-After"] = str(max(1, math.ceil(int(value) / 1000)))
    return response


#: Backends away, not bugs: answered 503 so clients retry.
_UNAVAILABLE: tuple[type[BaseException], ...] = (*errors.UNAVAILABLE_ERRORS, redis.RedisError)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ChatError as exc:
        return from_code(exc.code, str(exc), exc.metadata)
    except grpc.aio.AioRpcError as exc:
        return from_code(
            exc.code(), exc.details() or exc.code().name, tuple(exc.trailing_metadata() or ())
        )
    except _UNAVAILABLE as exc:
        # A backend away is not a bug: 503, so clients retry.
        return problem(503, "unavailable", f"a backend is unavailable ({type(exc).__name__})")
    except web.HTTPRequestEntityTooLarge as exc:
        return problem(413, "request too large", exc.text or "the request body is too large")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = problem(
            405, "method not allowed", f"{request.method} is not allowed here; allowed: {allowed}"
        )
        response.headers["Allow"] = allowed
        return response
    except web.HTTPException as exc:
        if exc.status >= 400:
            return problem(exc.status, exc.reason, exc.text or exc.reason)
        raise
    except Exception:
        # A bug, not the client's fault: said so without our internals (logged with them).
        logger.exception("unexpected error serving %s %s", request.method, request.path)
        return problem(500, "internal error", "the server failed; the error is logged")
