"""Reading the caller from gRPC metadata: ``authorization: Bearer <access token>``."""

from __future__ import annotations

import grpc

from chatlib import tokens


def claims(
    context: grpc.aio.ServicerContext[object, object], verifier: tokens.Verifier
) -> tokens.Claims:
    """The verified claims of the call, or InvalidToken saying what is wrong."""
    return verifier.verify(_token(context))


def user_claims(
    context: grpc.aio.ServicerContext[object, object], verifier: tokens.Verifier
) -> tokens.Claims:
    """As ``claims``, for calls only a user may make (a service token is refused too)."""
    return verifier.verify_user(_token(context))


def _token(context: grpc.aio.ServicerContext[object, object]) -> str:
    header = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            header = value if isinstance(value, str) else value.decode()
    return tokens.bearer(header)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
