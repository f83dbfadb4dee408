"""The error hierarchy every service raises, and its one mapping to gRPC status codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

T = TypeVar("T")


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


async def abort(context: grpc.aio.ServicerContext[object, object], error: ChatError) -> None:
    """Ends the call with the error's status; raises (as grpc.aio's abort does)."""
    await context.abort(error.code, str(error), trailing_metadata=error.metadata)


async def guard(
    context: grpc.aio.ServicerContext[object, object], act: Callable[[], Awaitable[T]]
) -> T:
    """Run a handler body; a ChatError ends the call with its status and message."""
    try:
        return await act()
    except ChatError as exc:
        await abort(context, exc)
        raise  # abort raises; this only satisfies the type checker
