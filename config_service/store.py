"""Validated, versioned config sections in Redis, with an audit trail and change announcements.

One Lua script makes each change atomic: it checks the version the change was based on, then
stores the new document, appends the audit entry and publishes the document. Two operators
changing a section at once cannot both win; nobody ever sees a document without its audit
entry.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from chatlib import config_sections
from chatlib.config_checks import InvalidConfig
from chatlib.live_config import DEFAULT_NAMESPACE, Document, Namespace, read
from chatlib.partitioning import Partitioning
from chatlib.redis_client import durably

# Returns -1 when stored, else the version actually in Redis (the change was based on another).
REPLACE = """
local current = redis.call('GET', KEYS[1])
local version = 0
if current then version = cjson.decode(current)['version'] end
if version ~= tonumber(ARGV[1]) then return version end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return -1
"""


class VersionConflict(Exception):
    """The section changed since the version the caller based its change on."""


@dataclass(frozen=True)
class Outcome:
    document: Document
    changed: bool


class ConfigStore:
    def __init__(self, client: aioredis.Redis, namespace: Namespace = DEFAULT_NAMESPACE) -> None:
        self._client = client
        self._namespace = namespace
        self._replace = client.register_script(REPLACE)

    async def get(self, section: str) -> Document | None:
        _known(section)
        return await read(self._client, section, self._namespace)

    async def history(self, section: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries, oldest first."""
        _known(section)
        raw = await self._client.lrange(self._namespace.audit(section), -limit, -1)
        return [json.loads(entry) for entry in raw]

    async def replace(
        self, section: str, value: Any, *, by: str, expected_version: int | None = None
    ) -> Outcome:
        """Validate ``value`` as the whole new section and store it as the next version.

        ``expected_version`` (0: the section must not exist yet) makes the change conditional;
        without it, a change that raced another is re-validated against the newer one.
        """
        parsed = config_sections.parse(section, value)
        canonical = parsed.to_value()
        for _ in range(10):
            current = await read(self._client, section, self._namespace)
            version = current.version if current is not None else 0
            if expected_version is not None and version != expected_version:
                raise VersionConflict(
                    f"{section} is at version {version}, the change was based on version"
                    f" {expected_version}; read it again and retry"
                )
            if current is not None:
                check_transition(section, current.value, parsed)
                if current.value == canonical:
                    return Outcome(current, changed=False)
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
            document = Document(section, version + 1, canonical, by, now)
            entry = {
                "version": version + 1,
                "by": by,
                "at": now,
                "old": current.value if current is not None else None,
                "new": canonical,
            }
            keys = [self._namespace.key(section), self._namespace.audit(section)]
            args = [
                version,
                document.to_json(),
                json.dumps(entry, sort_keys=True),
                self._namespace.channel,
            ]

            async def store(pipe: Pipeline, keys: list[str] = keys, args: list[Any] = args) -> None:
                await self._replace(keys=keys, args=args, client=pipe)

            # A change a failover loses would be one the operator was told is live.
            (result,) = await durably(self._client, store)
            if int(result) == -1:
                return Outcome(document, changed=True)
            if expected_version is not None:
                raise VersionConflict(
                    f"{section} moved to version {int(result)} while this change was stored;"
                    " read it again and retry"
                )
        raise VersionConflict(f"{section} kept changing under this change; retry")

    async def seed(self, section: str, value: Any, *, by: str) -> Outcome:
        """Store ``value`` as version 1 unless the section exists already."""
        try:
            return await self.replace(section, value, by=by, expected_version=0)
        except VersionConflict:
            current = await read(self._client, section, self._namespace)
            if current is None:  # deleted by hand in between; never by this service
                raise
            return Outcome(current, changed=False)


def check_transition(section: str, old_value: Any, new: Any) -> None:
    """Rules about changes, beyond what makes a single document valid."""
    if section == "partitioning" and isinstance(new, Partitioning):
        if not isinstance(old_value, dict):
            return
        old = Partitioning.parse(old_value)
        if old.partitions == new.partitions:
            if old.eras != new.eras:
                raise InvalidConfig(
                    "partitioning.eras records where earlier partition counts ended in the log;"
                    " it changes only when partitions are added"
                )
            return
        if new.partitions < old.partitions:
            raise InvalidConfig(
                f"partitioning.partitions cannot go down from {old.partitions} to"
                f" {new.partitions}: Kafka partitions are never removed"
            )
        if not old.hold_sends or new.eras[:-1] != old.eras or not new.eras:
            raise InvalidConfig(
                f"partitioning.partitions changes from {old.partitions} only while sends are"
                " held, with an era recording where each old partition ended; add partitions"
                " with chat-admin grow (./dev admin grow), which does both"
            )
        if new.eras[-1].partitions != old.partitions:
            raise InvalidConfig(
                f"partitioning.eras must end with the count being replaced ({old.partitions}),"
                f" got {new.eras[-1].partitions}"
            )


def _known(section: str) -> None:
    if section not in config_sections.PARSERS:
        raise InvalidConfig(
            f"unknown section {section!r} (sections: {', '.join(sorted(config_sections.PARSERS))})"
        )
