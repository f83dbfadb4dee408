"""The error hierarchy every service raises, and its one mapping to gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import cassandra
import grpc
from cassandra.cluster import NoHostAvailable
from prometheus_client import Counter

logger = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R")
Context = grpc.aio.ServicerContext[object, object]


#: Every unary call a service answered, by method and status (the streams have their own).
REQUESTS = Counter(
    "chat_grpc_requests_total", "gRPC calls answered, by method and status", ["method", "code"]
)
RETRY_AFTER_KEY = "chat-retry-after-ms"
REDIRECT_KEY = "chat-redirect"


class ChatError(Exception):
    """Base: the message is for the caller and names the problem."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        #: Sent as gRPC trailing metadata: machine-readable detail (a redirect, a retry delay).
        self.metadata = metadata


class InvalidArgument(ChatError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ChatError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ChatError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ChatError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ChatError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ChatError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ChatError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message, metadata=((RETRY_AFTER_KEY, str(retry_after_ms)),))
        self.retry_after_ms = retry_after_ms


class Unavailable(ChatError):
    code = grpc.StatusCode.UNAVAILABLE


class Internal(ChatError):
    code = grpc.StatusCode.INTERNAL


#: Failures of a backend that a retry can get past: answered UNAVAILABLE, not as a bug.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    cassandra.Unavailable,
    cassandra.OperationTimedOut,
    cassandra.WriteTimeout,
    cassandra.ReadTimeout,
    NoHostAvailable,
    ConnectionError,
    TimeoutError,
)


async def abort(context: grpc.aio.ServicerContext[object, object], error: ChatError) -> None:
    """Ends the call with the error's status; raises (as grpc.aio's abort does)."""
    await context.abort(error.code, str(error), trailing_metadata=error.metadata)


def handler(
    method: Callable[[S, R, Context], Awaitable[T]],
) -> Callable[[S, R, Context], Awaitable[T]]:
    """Decorates a unary gRPC handler: a ChatError ends the call with its status and message.

    The one place a gRPC server turns domain errors into statuses; handlers only raise.
    """

    name = method.__name__
    ok = REQUESTS.labels(method=name, code="OK")

    @functools.wraps(method)
    async def mapped(self: S, request: R, context: Context) -> T:
        try:
            result = await method(self, request, context)
        except ChatError as exc:
            REQUESTS.labels(method=name, code=exc.code.name).inc()
            await abort(context, exc)
            raise  # abort raises; this only satisfies the type checker
        except UNAVAILABLE_ERRORS as exc:
            REQUESTS.labels(method=name, code="UNAVAILABLE").inc()
            await abort(context, Unavailable(f"a backend is unavailable ({type(exc).__name__})"))
            raise
        except Exception:
            # A bug: the caller learns that much, never our internals (they are logged).
            REQUESTS.labels(method=name, code="INTERNAL").inc()
            logger.exception("unexpected error in %s", name)
            await abort(context, Internal("the server failed; the error is logged"))
            raise
        ok.inc()
        return result

    return mapped
