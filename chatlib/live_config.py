"""Following the live configuration: every service's view of the sections it uses.

It follows the sections as ``chatlib/subscription.py`` says (subscribe, then read every
section; re-read after any reconnect and every 30 s). A published document applies only if
its version is newer; if it skips a version, that section is read again (a gap means an
announcement was lost). While Redis is away the last good configuration stays in force and
readiness says so.

A document that fails to parse is logged and skipped; the last good one stays in force.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from prometheus_client import Gauge

from chatlib.config_checks import InvalidConfig
from chatlib.settings import RedisAccess
from chatlib.subscription import ChannelFollower

logger = logging.getLogger(__name__)
T = TypeVar("T")

VERSION = Gauge("chat_config_version", "Version of each config section in force", ["section"])
CONNECTED = Gauge("chat_config_subscribed", "1 while the config subscription is live")


@dataclass(frozen=True)
class Namespace:
    """Where a configuration lives in Redis. Another prefix is another, independent config
    (tests use one each; two clusters could share a Redis)."""

    prefix: str = "chat:config"

    def key(self, section: str) -> str:
        # The braces are a cluster hash tag: a section and its audit trail share a slot, so
        # the config service can change both in one script.
        return f"{self.prefix}:{{{section}}}"

    def audit(self, section: str) -> str:
        return f"{self.prefix}:{{{section}}}:audit"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:changes"


DEFAULT_NAMESPACE = Namespace()


@dataclass(frozen=True)
class Document:
    section: str
    version: int
    value: Any
    updated_by: str
    updated_at: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "section": self.section,
                "version": self.version,
                "value": self.value,
                "updated_by": self.updated_by,
                "updated_at": self.updated_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Document:
        data = json.loads(raw)
        return cls(
            section=str(data["section"]),
            version=int(data["version"]),
            value=data["value"],
            updated_by=str(data.get("updated_by", "")),
            updated_at=str(data.get("updated_at", "")),
        )


async def read(
    client: aioredis.Redis, section: str, namespace: Namespace = DEFAULT_NAMESPACE
) -> Document | None:
    raw = await client.get(namespace.key(section))
    return None if raw is None else Document.from_json(raw)


Listener = Callable[[T], None]


class LiveSection(Generic[T]):
    """One section as this process sees it: the newest version that parsed."""

    def __init__(self, name: str, parser: Callable[[Any], T]) -> None:
        self.name = name
        self._parser = parser
        self._value: T | None = None
        self.version = 0
        self._listeners: list[Listener[T]] = []

    def get(self) -> T:
        if self._value is None:
            raise LookupError(f"config section {self.name!r} has not been read yet")
        return self._value

    def on_change(self, listener: Listener[T]) -> None:
        """Called (on the event loop, must not block) with each newer value."""
        self._listeners.append(listener)

    def offer(self, document: Document) -> bool:
        if document.version <= self.version:
            return False
        try:
            value = self._parser(document.value)
        except (InvalidConfig, TypeError, ValueError, KeyError) as exc:
            logger.error(
                "config %s version %d is unusable, keeping version %d: %s",
                self.name,
                document.version,
                self.version,
                exc,
            )
            return False
        previous = self.version
        self._value = value
        self.version = document.version
        VERSION.labels(section=self.name).set(document.version)
        logger.info(
            "config %s: version %d -> %d (by %s)",
            self.name,
            previous,
            document.version,
            document.updated_by,
        )
        for listener in self._listeners:
            listener(value)
        return True


class LiveConfig(ChannelFollower):
    def __init__(
        self,
        access: RedisAccess,
        sections: list[LiveSection[Any]],
        namespace: Namespace = DEFAULT_NAMESPACE,
    ) -> None:
        super().__init__(access, namespace.channel, CONNECTED)
        self._namespace = namespace
        self._sections = {s.name: s for s in sections}

    async def start(self, stop: asyncio.Event) -> None:
        """Read every section once (failing if one does not exist), then follow changes in
        the background until ``stop``."""
        for section in self._sections.values():
            document = await read(self._client, section.name, self._namespace)
            if document is None:
                raise LookupError(
                    f"config section {section.name!r} is not in Redis; run"
                    " `python -m config_service seed`"
                )
            section.offer(document)
        self.follow_in_background(stop, "live-config")

    def describe_loss(self, lost_for: float, reason: str) -> str:
        versions = ", ".join(f"{s.name} v{s.version}" for s in self._sections.values())
        return (
            f"config subscription lost {lost_for:.0f}s ago ({reason}); serving the last good"
            f" config: {versions}"
        )

    async def snapshot(self) -> None:
        for section in self._sections.values():
            document = await read(self._client, section.name, self._namespace)
            if document is not None:
                section.offer(document)

    async def announced(self, raw: bytes) -> None:
        try:
            document = Document.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("ignoring a malformed config announcement: %s", exc)
            return
        section = self._sections.get(document.section)
        if section is None or document.version <= section.version:
            return
        if document.version > section.version + 1:
            logger.warning(
                "config %s jumped from version %d to %d; re-reading it",
                section.name,
                section.version,
                document.version,
            )
            latest = await read(self._client, section.name, self._namespace)
            if latest is not None:
                document = latest if latest.version >= document.version else document
        section.offer(document)
