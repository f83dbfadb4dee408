"""The error hierarchy every service raises, and its one mapping to gRPC status codes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

T = TypeVar("T")


class ChatError(Exception):
    """Base: the message is for the caller and names the problem."""

    code = grpc.StatusCode.INTERNAL


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


class Unavailable(ChatError):
    code = grpc.StatusCode.UNAVAILABLE


async def abort(context: grpc.aio.ServicerContext[object, object], error: ChatError) -> None:
    """Ends the call with the error's status; raises (as grpc.aio's abort does)."""
    await context.abort(error.code, str(error))


async def guard(
    context: grpc.aio.ServicerContext[object, object], act: Callable[[], Awaitable[T]]
) -> T:
    """Run a handler body; a ChatError ends the call with its status and message."""
    try:
        return await act()
    except ChatError as exc:
        await abort(context, exc)
        raise  # abort raises; this only satisfies the type checker
