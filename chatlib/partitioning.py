"""The partitioning section of the live configuration: who owns which partitions, and where.

Stored in Redis as JSON under ``chat:config:partitioning``. The config service (a later issue)
becomes its only writer; until then ``./dev up`` seeds the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

KEY = "chat:config:partitioning"


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    first: int
    last: int

    def owns(self, partition: int) -> bool:
        return self.first <= partition <= self.last


@dataclass(frozen=True)
class Partitioning:
    version: int
    partitions: int
    servers: tuple[Server, ...]

    def owner(self, partition: int) -> Server:
        for server in self.servers:
            if server.owns(partition):
                return server
        raise LookupError(f"partition {partition} is owned by no server")

    def server(self, name: str) -> Server:
        for server in self.servers:
            if server.name == name:
                return server
        raise LookupError(f"no server {name!r} in the partitioning config")

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "partitions": self.partitions,
                "servers": [
                    {"name": s.name, "address": s.address, "ranges": [[s.first, s.last]]}
                    for s in self.servers
                ],
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Partitioning:
        data = json.loads(raw)
        servers = tuple(
            Server(name=s["name"], address=s["address"], first=r[0], last=r[1])
            for s in data["servers"]
            for r in s["ranges"]
        )
        found = cls(
            version=int(data["version"]), partitions=int(data["partitions"]), servers=servers
        )
        for partition in range(found.partitions):
            owners = [s.name for s in servers if s.owns(partition)]
            if len(owners) != 1:
                raise ValueError(f"partition {partition} has owners {owners}, needs exactly one")
        return found


async def load(client: aioredis.Redis) -> Partitioning:
    raw = await client.get(KEY)
    if raw is None:
        raise LookupError(f"no partitioning config at {KEY}; ./dev up seeds it")
    return Partitioning.from_json(raw)
