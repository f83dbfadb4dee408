"""The ``partitioning`` config section: how many partitions, which server owns which, where.

Every user's partition is ``stable_hash(user_id) % partitions``; each partition is owned by
exactly one messaging server, which feeds that partition's live streams. Servers are listed
with the partition ranges they own and the address clients dial.

Partitions are only ever added (``config_service/grow.py``), and adding them moves users: a user's
records before the growth stay where they were written. So the section keeps every earlier
count with the offset where each of its partitions ended (``eras``), and ``trail`` tells a
reader which stretches of which partitions hold one user's records, oldest first. While a
growth seals the old partitions, ``hold_sends`` holds every send before it is produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chatlib.config_checks import InvalidConfig, array, boolean, fields, integer, text
from chatlib.hashing import stable_hash

MAX_PARTITIONS = 1024
SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SCHEMES = ("grpc",)
OPTIONAL = ("eras", "hold_sends")
#: An offset no log reaches: where the stretch of the current count ends.
OPEN = 2**63 - 1


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
class Era:
    """An earlier partition count, and the offset at which each of its partitions ended (the
    first offset written under the next count)."""

    partitions: int
    ends: tuple[int, ...]


@dataclass(frozen=True)
class Stretch:
    """Offsets ``start <= offset < end`` of ``partition``: where one user's records of one
    partition count are."""

    partition: int
    start: int
    end: int


@dataclass(frozen=True)
class Partitioning:
    partitions: int
    servers: tuple[Server, ...]
    #: Earlier counts, oldest first (empty until partitions are first added).
    eras: tuple[Era, ...] = ()
    #: Sends wait before they are produced (set only while partitions are being added).
    hold_sends: bool = False

    def trail(self, user_id: int) -> list[Stretch]:
        """The stretches holding ``user_id``'s records, oldest first; the last one is the
        current count's and is open-ended. Stretches of the same partition that follow each
        other are one (a user whom a growth did not move)."""
        digest = stable_hash(user_id)
        counts = [era.partitions for era in self.eras] + [self.partitions]
        stretches: list[Stretch] = []
        for index, count in enumerate(counts):
            partition = digest % count
            previous = self.eras[index - 1] if index else None
            start = (
                previous.ends[partition]
                if previous is not None and partition < previous.partitions
                else 0
            )
            end = self.eras[index].ends[partition] if index < len(self.eras) else OPEN
            if stretches and stretches[-1].partition == partition:
                stretches[-1] = Stretch(partition, stretches[-1].start, end)
            else:
                stretches.append(Stretch(partition, start, end))
        return stretches

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
        value: dict[str, Any] = {
            "partitions": self.partitions,
            "servers": [
                {"name": s.name, "address": s.address, "ranges": [list(r) for r in s.ranges]}
                for s in self.servers
            ],
        }
        if self.eras:
            value["eras"] = [{"partitions": e.partitions, "ends": list(e.ends)} for e in self.eras]
        if self.hold_sends:
            value["hold_sends"] = True
        return value

    @classmethod
    def parse(cls, value: Any) -> Partitioning:
        """Check the schema and the invariants: each partition has exactly one owner, and
        earlier counts are smaller, in order, with ends that never go back."""
        if isinstance(value, dict):
            required = {"partitions", "servers"} | {k for k in OPTIONAL if k in value}
        else:
            required = {"partitions", "servers"}
        doc = fields(value, "partitioning", required)
        count = integer(doc, "partitions", "partitioning", 1, MAX_PARTITIONS)
        eras = _eras(doc, count) if "eras" in doc else ()
        hold = boolean(doc, "hold_sends", "partitioning") if "hold_sends" in doc else False
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
        found = cls(count, tuple(servers), eras, hold)
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


def _eras(doc: dict[str, Any], count: int) -> tuple[Era, ...]:
    eras: list[Era] = []
    for index, raw in enumerate(array(doc, "eras", "partitioning")):
        where = f"partitioning.eras[{index}]"
        entry = fields(raw, where, {"partitions", "ends"})
        partitions = integer(entry, "partitions", where, 1, MAX_PARTITIONS)
        bound = eras[-1].partitions if eras else 0
        if partitions <= bound or partitions >= count:
            raise InvalidConfig(
                f"{where}.partitions {partitions} must be more than the era before"
                f" ({bound}) and fewer than partitions ({count}): partitions are only added"
            )
        ends = array(entry, "ends", where)
        if len(ends) != partitions or not all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in ends
        ):
            raise InvalidConfig(
                f"{where}.ends must be {partitions} offsets (one per partition, each >= 0)"
            )
        if eras:
            went_back = [p for p, end in enumerate(eras[-1].ends) if ends[p] < end]
            if went_back:
                raise InvalidConfig(
                    f"{where}.ends[{went_back[0]}] is before the era before's end of partition"
                    f" {went_back[0]} ({eras[-1].ends[went_back[0]]}): offsets only grow"
                )
        eras.append(Era(partitions, tuple(ends)))
    return tuple(eras)
