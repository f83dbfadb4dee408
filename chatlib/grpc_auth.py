"""Reading the caller from gRPC metadata: ``authorization: Bearer <access token>``."""

from __future__ import annotations

import grpc

from chatlib import tokens
from chatlib.errors import Unauthenticated


def claims(
    context: grpc.aio.ServicerContext[object, object], verifier: tokens.Verifier
) -> tokens.Claims:
    """The verified claims of the call; Unauthenticated saying what is wrong otherwise."""
    try:
        return verifier.verify(_token(context))
    except tokens.InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None


def user_claims(
    context: grpc.aio.ServicerContext[object, object], verifier: tokens.Verifier
) -> tokens.Claims:
    """As ``claims``, for calls only a user may make (a service token is refused too)."""
    try:
        return verifier.verify_user(_token(context))
    except tokens.InvalidToken as exc:
        raise Unauthenticated(str(exc)) from None


def _token(context: grpc.aio.ServicerContext[object, object]) -> str:
    header = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            header = value if isinstance(value, str) else value.decode()
    return tokens.bearer(header)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
