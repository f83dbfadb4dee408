"""Following the live configuration: every service's view of the sections it uses.

Protocol (pub/sub is lossy, so it is only a hint):

1. subscribe to the change channel first,
2. then read a snapshot of every section, so no change can fall between the two,
3. apply a published document only if its version is newer; if it skips a version, re-read
   that section (a gap means a message was lost),
4. on any connection error, keep the last good configuration, report it in readiness and
   logs, and start again at 1 once Redis answers. A slow periodic re-read catches anything a
   silent connection might have missed.

A document that fails to parse is logged and skipped; the last good one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatlib.config_checks import InvalidConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")

RESYNC_SECONDS = 30.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0)
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


class LiveConfig:
    def __init__(
        self,
        url: str,
        sections: list[LiveSection[Any]],
        namespace: Namespace = DEFAULT_NAMESPACE,
    ) -> None:
        self._namespace = namespace
        # Its own client, with redis-py's silent reconnects turned off: a reconnect that the
        # subscriber does not see would skip step 2 and could miss a change.
        self._client = aioredis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=5,
        )
        self._sections = {s.name: s for s in sections}
        self._lost_since: float | None = None
        self._lost_reason = ""
        self._failures = 0
        self._task: asyncio.Task[None] | None = None
        #: True while the subscription is live (subscribed and the snapshot read).
        self.subscribed = False
        #: How many times the subscription was lost and restored (tests and logs read it).
        self.resubscribed = 0

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
        self._task = asyncio.create_task(self.run(stop), name="live-config")

    async def check(self) -> str | None:
        """A readiness check: the follower must be running (Redis away is only degraded)."""
        if self._task is None:
            return "live config not started"
        if self._task.done():
            return f"live config follower ended: {self._task.exception()!r}"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Follow changes until ``stop``; never gives up on Redis."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (aioredis.RedisError, OSError) as exc:
                self._lost(exc)
                pause = RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS) - 1)]
                self._failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    async def close(self) -> None:
        """After ``stop`` is set: wait for the follower, then close the connection."""
        if self._task is not None:
            await self._task
        await self._client.aclose()

    def problem(self) -> str | None:
        """None while subscribed; otherwise what is stale, for readiness and logs."""
        if self._lost_since is None:
            return None
        versions = ", ".join(f"{s.name} v{s.version}" for s in self._sections.values())
        return (
            f"config subscription lost {time.monotonic() - self._lost_since:.0f}s ago"
            f" ({self._lost_reason}); serving the last good config: {versions}"
        )

    async def _follow(self, stop: asyncio.Event) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(self._namespace.channel)
            await self._snapshot()
            if self._lost_since is not None:
                logger.warning("config subscription restored after %s", self.problem())
                self.resubscribed += 1
            self._lost_since = None
            self._failures = 0
            self.subscribed = True
            CONNECTED.set(1)
            resync_at = time.monotonic() + RESYNC_SECONDS
            while not stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    await self._apply(message["data"])
                if time.monotonic() >= resync_at:
                    await self._snapshot()
                    resync_at = time.monotonic() + RESYNC_SECONDS

    async def _snapshot(self) -> None:
        for section in self._sections.values():
            document = await read(self._client, section.name, self._namespace)
            if document is not None:
                section.offer(document)

    async def _apply(self, raw: bytes) -> None:
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

    def _lost(self, exc: BaseException) -> None:
        self.subscribed = False
        CONNECTED.set(0)
        if self._lost_since is None:
            self._lost_since = time.monotonic()
            self._lost_reason = f"{type(exc).__name__}: {exc}"
            logger.warning("%s", self.problem())
