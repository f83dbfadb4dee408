"""The ``partitioning`` config section: how many partitions, which server owns which, where.

Every user's partition is ``stable_hash(user_id) % partitions``; each partition is owned by
exactly one messaging server, which feeds that partition's live streams. Servers are listed
with the partition ranges they own and the address clients dial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chatlib.config_checks import InvalidConfig, array, fields, integer, text

MAX_PARTITIONS = 1024
SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SCHEMES = ("grpc",)


@dataclass(frozen=True)
class Server:
    name: str
    #: ``grpc://host:port``: the scheme leaves room for TLS (``grpcs``) without a format change.
    address: str
    ranges: tuple[tuple[int, int], ...]

    @property
    def target(self) -> str:
        """What a gRPC client dials: ``host:port``."""
        return self.address.split("://", 1)[1]

    def owns(self, partition: int) -> bool:
        return any(first <= partition <= last for first, last in self.ranges)

    def partitions(self) -> frozenset[int]:
        return frozenset(p for first, last in self.ranges for p in range(first, last + 1))

    def describe(self) -> str:
        return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in self.ranges) or "nothing"


@dataclass(frozen=True)
class Partitioning:
    partitions: int
    servers: tuple[Server, ...]

    def owner(self, partition: int) -> Server:
        for server in self.servers:
            if server.owns(partition):
                return server
        raise LookupError(f"partition {partition} is owned by no server")

    def server(self, name: str) -> Server | None:
        for server in self.servers:
            if server.name == name:
                return server
        return None

    def owned_by(self, name: str) -> frozenset[int]:
        server = self.server(name)
        return server.partitions() if server is not None else frozenset()

    def to_value(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "servers": [
                {"name": s.name, "address": s.address, "ranges": [list(r) for r in s.ranges]}
                for s in self.servers
            ],
        }

    @classmethod
    def parse(cls, value: Any) -> Partitioning:
        """Check the schema and the invariants: each partition has exactly one owner."""
        doc = fields(value, "partitioning", {"partitions", "servers"})
        count = integer(doc, "partitions", "partitioning", 1, MAX_PARTITIONS)
        servers = []
        names: set[str] = set()
        addresses: dict[str, str] = {}
        for index, raw in enumerate(array(doc, "servers", "partitioning")):
            where = f"partitioning.servers[{index}]"
            entry = fields(raw, where, {"name", "address", "ranges"})
            name = text(entry, "name", where)
            if not SERVER_NAME.match(name):
                raise InvalidConfig(
                    f"{where}.name {name!r} must be 1-32 characters of a-z, 0-9, '_', '-'"
                )
            if name in names:
                raise InvalidConfig(f"{where}.name {name!r} appears twice")
            names.add(name)
            address = _address(text(entry, "address", where), f"{where}.address")
            if address in addresses:
                raise InvalidConfig(
                    f"{where}.address {address} is also the address of {addresses[address]!r}"
                )
            addresses[address] = name
            ranges = [
                _range(r, f"{where}.ranges[{i}]", count)
                for i, r in enumerate(array(entry, "ranges", where))
            ]
            servers.append(Server(name, address, tuple(sorted(ranges))))
        found = cls(count, tuple(servers))
        found._check_ownership()
        return found

    def _check_ownership(self) -> None:
        unowned: list[int] = []
        for partition in range(self.partitions):
            owners = [s for s in self.servers if s.owns(partition)]
            if len(owners) > 1:
                raise InvalidConfig(
                    f"partitioning: partition {partition} is owned by both {owners[0].name!r}"
                    f" ({owners[0].describe()}) and {owners[1].name!r} ({owners[1].describe()});"
                    " ranges must not overlap"
                )
            if not owners:
                unowned.append(partition)
        if unowned:
            listed = ", ".join(str(p) for p in unowned[:10]) + (" ..." if len(unowned) > 10 else "")
            raise InvalidConfig(
                f"partitioning: partition(s) {listed} are owned by no server; every partition"
                f" 0-{self.partitions - 1} needs exactly one owner"
            )


def _address(raw: str, where: str) -> str:
    if "://" not in raw:
        raise InvalidConfig(f"{where} {raw!r} has no scheme; write it as grpc://host:port")
    parts = urlsplit(raw)
    if parts.scheme not in SCHEMES:
        raise InvalidConfig(f"{where} {raw!r}: scheme must be grpc, got {parts.scheme!r}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or not 1 <= port <= 65535:
        raise InvalidConfig(f"{where} {raw!r} must be grpc://host:port with a port 1-65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidConfig(f"{where} {raw!r} must be only grpc://host:port")
    return f"{parts.scheme}://{parts.netloc}"


def _range(raw: Any, where: str, count: int) -> tuple[int, int]:
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
    ):
        raise InvalidConfig(f"{where} must be [first, last], two partition numbers")
    first, last = raw
    if not 0 <= first <= last < count:
        raise InvalidConfig(
            f"{where} [{first}, {last}] must satisfy 0 <= first <= last <= {count - 1}"
            f" (partitions is {count})"
        )
    return first, last
