"""The users topic's record: one ``UserRecord`` per registered user, keyed by the user id (the
topic is compacted, so the newest record of each user is kept for ever). This module is its
only codec: registration writes it, a rebuild and the backfill read and write it."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from chatlib.errors import InvalidArgument
from protos.chat.v1 import envelope_pb2

UserRecord = envelope_pb2.UserRecord


class InvalidUserRecord(ValueError):
    """The bytes are not a user record this version can use."""


def user(user_id: int, username: str, password_hash: str, created_at_ms: int) -> UserRecord:
    return UserRecord(
        user_id=user_id,
        username=username,
        password_hash=password_hash,
        created_at_ms=created_at_ms,
    )


#: What a display name may be (UpdateProfile): this many characters, no control characters.
MAX_DISPLAY_NAME = 64


def check_display_name(name: str) -> None:
    if len(name) > MAX_DISPLAY_NAME or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidArgument(
            f"display_name must be at most {MAX_DISPLAY_NAME} characters, without control"
            " characters"
        )


def encode(record: UserRecord) -> tuple[bytes, bytes]:
    """(key, value) of the user's record."""
    return str(record.user_id).encode("ascii"), record.SerializeToString()


def decode(value: bytes | None) -> UserRecord | None:
    """The user in ``value``; None for a tombstone (compaction's mark of a removed key)."""
    if not value:
        return None
    try:
        found = UserRecord.FromString(value)
    except DecodeError as exc:
        raise InvalidUserRecord(f"not a UserRecord: {exc}") from None
    if not found.user_id or not found.username:
        raise InvalidUserRecord("user record lacks user_id or username")
    return found
