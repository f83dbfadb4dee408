"""The sections of the live configuration and how each is read.

The config service validates a change with the same parser a service uses to read it, so a
document that was accepted is always one every service can apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from chatlib.config_checks import InvalidConfig, array, boolean, fields, integer, number, text
from chatlib.partitioning import Partitioning


@dataclass(frozen=True)
class Limits:
    #: Largest message body in UTF-8 bytes; a larger send is refused.
    max_body_bytes: int
    #: History page size when the client gives none, and the largest it may ask for.
    history_page_default: int
    history_page_max: int
    #: Per-user send rate (token bucket refill per second) and burst (bucket size).
    send_rate_per_second: float
    send_burst: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Limits:
        where = "limits"
        doc = fields(value, where, set(cls.__dataclass_fields__))
        found = cls(
            max_body_bytes=integer(doc, "max_body_bytes", where, 1, 32_768),
            history_page_default=integer(doc, "history_page_default", where, 1, 1000),
            history_page_max=integer(doc, "history_page_max", where, 1, 1000),
            send_rate_per_second=number(doc, "send_rate_per_second", where, 0.01, 10_000),
            send_burst=integer(doc, "send_burst", where, 1, 100_000),
        )
        if found.history_page_default > found.history_page_max:
            raise InvalidConfig(
                f"limits.history_page_default ({found.history_page_default}) must not exceed"
                f" limits.history_page_max ({found.history_page_max})"
            )
        return found


@dataclass(frozen=True)
class Features:
    #: New accounts may register (POST /v1/users); off answers 403.
    registration_open: bool
    #: Users may send; off answers UNAVAILABLE / 503 (read-only maintenance mode).
    sending_enabled: bool
    #: A group message is one record per partition holding members (off: a copy per member,
    #: which every version reads). Absent from a stored section it is off: a deployment
    #: upgraded from a version without group records turns it on once every messaging server,
    #: history writer and notifier runs a version that reads them.
    group_records: bool = False

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Features:
        if isinstance(value, dict) and "group_records" not in value:
            value = {**value, "group_records": False}
        doc = fields(value, "features", set(cls.__dataclass_fields__))
        return cls(**{key: boolean(doc, key, "features") for key in doc})


@dataclass(frozen=True)
class AuthLimits:
    """How many login and registration attempts the BFF takes (fixed windows in Redis).

    Failed logins are counted per username (guessing one account's password) and per client
    address (trying many accounts); a login that would succeed is refused too once either
    budget is spent, or the limit would tell a guesser which password was right.
    Registrations are counted per client address.
    """

    login_failures_per_username: int
    username_window_seconds: int
    login_failures_per_address: int
    registrations_per_address: int
    address_window_seconds: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> AuthLimits:
        where = "auth"
        doc = fields(value, where, set(cls.__dataclass_fields__))
        return cls(
            login_failures_per_username=integer(
                doc, "login_failures_per_username", where, 1, 1_000_000
            ),
            username_window_seconds=integer(doc, "username_window_seconds", where, 1, 86_400),
            login_failures_per_address=integer(
                doc, "login_failures_per_address", where, 1, 1_000_000
            ),
            registrations_per_address=integer(
                doc, "registrations_per_address", where, 1, 1_000_000
            ),
            address_window_seconds=integer(doc, "address_window_seconds", where, 1, 86_400),
        )


@dataclass(frozen=True)
class Sessions:
    """How sessions live (bff/session_routes.py, chatlib/sessions.py)."""

    #: For this long after a refresh token was spent, presenting it again answers the same new
    #: tokens the first refresh got (two tabs, or a phone retrying a refresh whose answer it
    #: lost); later, a spent token ends the session on every device. 0: never.
    refresh_reuse_seconds: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Sessions:
        doc = fields(value, "sessions", set(cls.__dataclass_fields__))
        return cls(refresh_reuse_seconds=integer(doc, "refresh_reuse_seconds", "sessions", 0, 300))


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?")


@dataclass(frozen=True)
class Web:
    """Browsers' live streams (bff/live.py).

    A page served by the BFF itself is always allowed; ``allowed_origins`` lists the other
    origins (``scheme://host[:port]``) whose pages may open a WebSocket or an SSE stream.
    """

    allowed_origins: tuple[str, ...]
    #: Seconds between heartbeats (WebSocket ping, SSE comment) so idle proxies keep the
    #: connection and both ends notice a dead one.
    heartbeat_seconds: int

    def to_value(self) -> dict[str, Any]:
        return {
            "allowed_origins": list(self.allowed_origins),
            "heartbeat_seconds": self.heartbeat_seconds,
        }

    @classmethod
    def parse(cls, value: Any) -> Web:
        where = "web"
        doc = fields(value, where, set(cls.__dataclass_fields__))
        origins = array(doc, "allowed_origins", where)
        if len(origins) > 100:
            raise InvalidConfig(f"{where}.allowed_origins has {len(origins)} entries (at most 100)")
        for index, origin in enumerate(origins):
            if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
                raise InvalidConfig(
                    f"{where}.allowed_origins[{index}] must be scheme://host[:port] with "
                    f"scheme http or https, got {origin!r}"[:200]
                )
        return cls(
            allowed_origins=tuple(origins),
            heartbeat_seconds=integer(doc, "heartbeat_seconds", where, 1, 300),
        )


@dataclass(frozen=True)
class Groups:
    """Group chats (messaging/groups/rules.py)."""

    #: Members a group may hold; a change that would make it larger is refused.
    max_members: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Groups:
        doc = fields(value, "groups", set(cls.__dataclass_fields__))
        return cls(max_members=integer(doc, "max_members", "groups", 2, 100_000))


@dataclass(frozen=True)
class Messages:
    """What may happen to a message after it is sent (messaging/send/amend.py), and typing
    (messaging/signals/typing.py)."""

    #: How long after sending a message its sender may still edit it.
    edit_window_seconds: int
    #: How long a typing event lasts unless renewed; forwarded at most twice per this long.
    typing_seconds: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Messages:
        doc = fields(value, "messages", set(cls.__dataclass_fields__))
        return cls(
            edit_window_seconds=integer(doc, "edit_window_seconds", "messages", 1, 30 * 86_400),
            typing_seconds=integer(doc, "typing_seconds", "messages", 2, 60),
        )


@dataclass(frozen=True)
class Files:
    """Attachments (messaging/attachments.py): the object store's bytes, our rows."""

    #: The largest file an upload may declare (the store refuses bigger bodies).
    max_bytes: int
    #: An upload no send claimed is removed this long after it was made.
    upload_ttl_seconds: int
    #: How long a download link stays good.
    link_seconds: int
    #: How often a messaging server sweeps deleted and expired files from the store.
    sweep_seconds: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Files:
        doc = fields(value, "files", set(cls.__dataclass_fields__))
        return cls(
            max_bytes=integer(doc, "max_bytes", "files", 1, 5 * 2**30),
            upload_ttl_seconds=integer(doc, "upload_ttl_seconds", "files", 1, 30 * 86_400),
            link_seconds=integer(doc, "link_seconds", "files", 10, 7 * 86_400),
            sweep_seconds=integer(doc, "sweep_seconds", "files", 1, 86_400),
        )


_WEBHOOK = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[!-~]*)?")


@dataclass(frozen=True)
class Notifications:
    """Notifications for offline users (notifier/)."""

    #: Where notifications are POSTed (a push gateway); "" switches them off.
    webhook_url: str
    #: A user's messages in one chat within this long of the first make one notification.
    collapse_seconds: int
    #: Tries of a notification before it goes to the dead-letter topic.
    max_attempts: int

    def to_value(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, value: Any) -> Notifications:
        where = "notifications"
        doc = fields(value, where, set(cls.__dataclass_fields__))
        url = text(doc, "webhook_url", where)
        if url and (len(url) > 2000 or not _WEBHOOK.fullmatch(url)):
            raise InvalidConfig(
                f"{where}.webhook_url must be empty (off) or an http(s) URL without spaces,"
                f" got {url!r}"[:200]
            )
        return cls(
            webhook_url=url,
            collapse_seconds=integer(doc, "collapse_seconds", where, 1, 300),
            max_attempts=integer(doc, "max_attempts", where, 1, 20),
        )


DEFAULT_LIMITS = Limits(
    max_body_bytes=4096,
    history_page_default=50,
    history_page_max=200,
    send_rate_per_second=20.0,
    send_burst=100,
)
DEFAULT_FEATURES = Features(registration_open=True, sending_enabled=True, group_records=True)
DEFAULT_SESSIONS = Sessions(refresh_reuse_seconds=10)
DEFAULT_WEB = Web(allowed_origins=(), heartbeat_seconds=15)
DEFAULT_GROUPS = Groups(max_members=1000)
DEFAULT_MESSAGES = Messages(edit_window_seconds=900, typing_seconds=6)
DEFAULT_FILES = Files(
    max_bytes=25 * 2**20, upload_ttl_seconds=86_400, link_seconds=300, sweep_seconds=60
)
DEFAULT_NOTIFICATIONS = Notifications(webhook_url="", collapse_seconds=5, max_attempts=6)
DEFAULT_AUTH = AuthLimits(
    login_failures_per_username=20,
    username_window_seconds=300,
    login_failures_per_address=300,
    registrations_per_address=200,
    address_window_seconds=10,
)

#: Section name -> parser. A section not named here does not exist.
PARSERS: dict[str, Callable[[Any], Any]] = {
    "partitioning": Partitioning.parse,
    "limits": Limits.parse,
    "features": Features.parse,
    "auth": AuthLimits.parse,
    "sessions": Sessions.parse,
    "web": Web.parse,
    "groups": Groups.parse,
    "messages": Messages.parse,
    "notifications": Notifications.parse,
    "files": Files.parse,
}


def parse(section: str, value: Any) -> Any:
    parser = PARSERS.get(section)
    if parser is None:
        raise InvalidConfig(f"unknown section {section!r} (sections: {', '.join(sorted(PARSERS))})")
    return parser(value)
