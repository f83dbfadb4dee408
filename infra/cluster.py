"""The cluster ``./dev up --cluster`` runs on loopback: three Kafka brokers, three Cassandra
nodes, a Redis primary with two replicas and three sentinels, and the credentials each of our
services uses with each of them.

Addresses and ports differ from the single-node stack's, so the two never mistake one another
(the single-node Cassandra holds 127.0.0.1:9042; the cluster's nodes are 127.0.0.2-4, loopback
addresses Linux answers without any setup). Credentials are generated once into
``.infra/secrets/cluster/`` (mode 0600) and handed to services as files, never on a command
line.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.layout import Layout

NODES = (1, 2, 3)

#: Kafka: three brokers, each also a KRaft controller.
KAFKA_PORTS = {1: 19092, 2: 19093, 3: 19094}
KAFKA_CONTROLLER_PORTS = {1: 19192, 2: 19193, 3: 19194}
KAFKA_BOOTSTRAP = ",".join(f"127.0.0.1:{port}" for port in KAFKA_PORTS.values())
#: The brokers' own login among themselves (SCRAM) and the controllers' (PLAIN).
KAFKA_BROKER_USER = "broker"
KAFKA_CONTROLLER_USER = "controller"

#: Cassandra: one node per loopback address, one token each, evenly spaced.
CASSANDRA_ADDRESSES = {1: "127.0.0.2", 2: "127.0.0.3", 3: "127.0.0.4"}
CASSANDRA_TOKENS = {1: -9223372036854775808, 2: -3074457345618258603, 3: 3074457345618258602}
CASSANDRA_JMX_PORTS = {1: 7299, 2: 7399, 3: 7499}
CASSANDRA_PORT = 9042
CASSANDRA_STORAGE_PORT = 7000
CASSANDRA_DATACENTER = "datacenter1"
KEYSPACE_REPLICATION = f"{{'class': 'NetworkTopologyStrategy', '{CASSANDRA_DATACENTER}': 3}}"

#: The object store (SeaweedFS): one node beside each Cassandra node, on its address. Each
#: holds a master (the three elect a leader), a volume server, a filer and an S3 gateway; every
#: file is written to two volume servers.
OBJECT_STORE_ADDRESSES = CASSANDRA_ADDRESSES
OBJECT_STORE_REPLICATION = "001"

#: Redis: node 1 starts as the primary; the sentinels follow it under MASTER.
REDIS_PORTS = {1: 16379, 2: 16380, 3: 16381}
SENTINEL_PORTS = {1: 26379, 2: 26380, 3: 26381}
REDIS_MASTER = "chat"
#: Sentinels that must agree a primary is down before one of them fails it over.
SENTINEL_QUORUM = 2
#: How replicas log in to the primary.
REDIS_REPLICATION_USER = "replication"

#: Who logs in to what. ``admin`` is the operator's: migrations, topics, grants, tests.
ADMIN = "admin"
SERVICE_USERS = ("messaging", "history", "notifier", "bff", "config", "admin")
KAFKA_USERS = ("messaging", "history", "notifier", "admin")
CASSANDRA_USERS = ("messaging", "history", "admin")


@dataclass(frozen=True)
class Secrets:
    """The cluster's credentials, each in a file of its own."""

    folder: Path

    @classmethod
    def of(cls, layout: Layout) -> Secrets:
        return cls(layout.state / "secrets" / "cluster")

    def file(self, name: str) -> Path:
        """The file holding ``name``'s secret, made on first use."""
        path = self.folder / name
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            self.folder.chmod(0o700)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path

    def password(self, name: str) -> str:
        return self.file(name).read_text().strip()


@dataclass(frozen=True)
class Topology:
    """Where the cluster's nodes are: the address each is reached at, and the one every node
    binds. ``./dev`` runs :data:`LOOPBACK`; compose runs :data:`COMPOSE` (one container per
    node, reached by its name). Both render their config files from the same code, so the two
    differ in addresses only."""

    #: What Kafka's and Redis's listeners bind (Cassandra binds its node's own address).
    bind: str
    kafka: Mapping[int, tuple[str, int]]
    kafka_controllers: Mapping[int, tuple[str, int]]
    cassandra: Mapping[int, str]
    redis: Mapping[int, tuple[str, int]]
    sentinels: Mapping[int, tuple[str, int]]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.kafka.values())

    @property
    def kafka_voters(self) -> str:
        return ",".join(f"{n}@{host}:{port}" for n, (host, port) in self.kafka_controllers.items())


LOOPBACK = Topology(
    bind="127.0.0.1",
    kafka={n: ("127.0.0.1", port) for n, port in KAFKA_PORTS.items()},
    kafka_controllers={n: ("127.0.0.1", port) for n, port in KAFKA_CONTROLLER_PORTS.items()},
    cassandra=CASSANDRA_ADDRESSES,
    redis={n: ("127.0.0.1", port) for n, port in REDIS_PORTS.items()},
    sentinels={n: ("127.0.0.1", port) for n, port in SENTINEL_PORTS.items()},
)
COMPOSE = Topology(
    bind="0.0.0.0",
    kafka={n: (f"kafka-{n}", 9092) for n in NODES},
    kafka_controllers={n: (f"kafka-{n}", 9093) for n in NODES},
    cassandra={n: f"cassandra-{n}" for n in NODES},
    redis={n: (f"redis-{n}", 6379) for n in NODES},
    sentinels={n: (f"sentinel-{n}", 26379) for n in NODES},
)


def service_environment(topology: Topology, keys: Secrets, user: str) -> dict[str, str]:
    """What a service (logging in as ``user``) is told of the cluster; its secrets are files
    in ``keys``'s folder."""
    env = {
        "CHAT_KAFKA_BOOTSTRAP": topology.kafka_bootstrap,
        "CHAT_CASSANDRA_HOSTS": ",".join(topology.cassandra.values()),
        "CHAT_CASSANDRA_PORT": str(CASSANDRA_PORT),
        "CHAT_KEYSPACE_REPLICATION": KEYSPACE_REPLICATION,
        "CHAT_TOPIC_REPLICATION": "3",
        "CHAT_REDIS_URL": "redis://127.0.0.1/0",
        "CHAT_REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in topology.sentinels.values()),
        "CHAT_REDIS_MASTER": REDIS_MASTER,
        "CHAT_REDIS_USER": user,
        "CHAT_REDIS_PASSWORD_FILE": str(keys.folder / f"redis-{user}"),
        "CHAT_REDIS_SENTINEL_PASSWORD_FILE": str(keys.folder / "redis-sentinel"),
    }
    if user in KAFKA_USERS:
        env |= {
            "CHAT_KAFKA_USER": user,
            "CHAT_KAFKA_PASSWORD_FILE": str(keys.folder / f"kafka-{user}"),
        }
    if user in CASSANDRA_USERS:
        env |= {
            "CHAT_CASSANDRA_USER": user,
            "CHAT_CASSANDRA_PASSWORD_FILE": str(keys.folder / f"cassandra-{user}"),
        }
    return env


def service_secrets(user: str) -> list[str]:
    """The names of the secret files a service logging in as ``user`` reads."""
    names = [f"redis-{user}", "redis-sentinel"]
    if user in KAFKA_USERS:
        names.append(f"kafka-{user}")
    if user in CASSANDRA_USERS:
        names.append(f"cassandra-{user}")
    return names
