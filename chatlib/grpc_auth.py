"""Reading the caller from gRPC metadata: ``authorization: Bearer <access token>``."""

from __future__ import annotations

import grpc

from chatlib import tokens


def claims(
    context: grpc.aio.ServicerContext[object, object], verifier: tokens.Verifier
) -> tokens.Claims:
    """The verified claims of the call, or InvalidToken saying what is wrong."""
    header = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            header = value if isinstance(value, str) else value.decode()
    return verifier.verify(tokens.bearer(header))


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
