"""Access tokens: HS256 JWTs (subject, session id, expiry), issued by the BFF, checked locally."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import jwt

ALGORITHM = "HS256"
ISSUER = "chat-bff"
SERVICE_SUBJECT = "service:bff"
#: Messaging's own calls to the history service (RecordOpenedChat).
MESSAGING_SUBJECT = "service:messaging"


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or of the wrong kind; says which."""


@dataclass(frozen=True)
class Claims:
    subject: str
    session_id: str
    expires_at: int

    @property
    def user_id(self) -> int:
        try:
            return int(self.subject)
        except ValueError:
            raise InvalidToken("token subject is not a user") from None


def issue(
    secret: str,
    subject: str,
    ttl_seconds: int,
    session_id: str | None = None,
    *,
    now: int | None = None,
) -> str:
    """A token valid for ``ttl_seconds`` from ``now`` (default: this second)."""
    now = int(time.time()) if now is None else now
    payload = {
        "sub": subject,
        "sid": session_id or uuid.uuid4().hex,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": ISSUER,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Claims:
    """Only HS256 with our key is accepted: ``alg: none`` and other keys are forgeries."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "sid", "exp", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("access token expired") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("access token signature is invalid") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidToken("access token algorithm is not allowed") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"access token is invalid: {exc}") from None
    return Claims(
        subject=str(payload["sub"]), session_id=str(payload["sid"]), expires_at=int(payload["exp"])
    )


class Revoked(Protocol):
    def reason(self, session_id: str) -> str | None: ...


class Verifier:
    """``verify`` with memory: a token checked once is not checked again until it expires.

    A client sends the same access token with every call of its session; HS256 verification
    costs more than the rest of a cached membership check, so each token is verified once per
    process (and its expiry and its session's revocation are checked on every use). Bounded:
    the oldest entries go first.
    """

    def __init__(
        self, secret: str, revoked: Revoked | None = None, capacity: int = 100_000
    ) -> None:
        self._secret = secret
        self._revoked = revoked
        self._capacity = capacity
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    def verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = verify(self._secret, token)
            self._verified[token] = claims
            if len(self._verified) > self._capacity:
                self._verified.popitem(last=False)
        elif claims.expires_at <= time.time():
            del self._verified[token]
            raise InvalidToken("access token expired")
        if self._revoked is not None:
            reason = self._revoked.reason(claims.session_id)
            if reason is not None:
                raise InvalidToken(f"the session has ended: {reason}")
        return claims

    def verify_user(self, token: str) -> Claims:
        """``verify``, and the token must name a user (a service token raises too)."""
        claims = self.verify(token)
        claims.user_id  # noqa: B018 - raises InvalidToken for a service subject
        return claims


def bearer(header: str | None) -> str:
    if not header:
        raise InvalidToken("no access token: send 'authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization must be 'Bearer <token>'")
    return token.strip()
