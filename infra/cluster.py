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


def service_environment(layout: Layout, user: str) -> dict[str, str]:
    """What a service (logging in as ``user``) is told of the cluster."""
    keys = Secrets.of(layout)
    env = {
        "CHAT_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "CHAT_CASSANDRA_HOSTS": ",".join(CASSANDRA_ADDRESSES.values()),
        "CHAT_CASSANDRA_PORT": str(CASSANDRA_PORT),
        "CHAT_KEYSPACE_REPLICATION": KEYSPACE_REPLICATION,
        "CHAT_TOPIC_REPLICATION": "3",
        "CHAT_REDIS_URL": "redis://127.0.0.1/0",
        "CHAT_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in SENTINEL_PORTS.values()),
        "CHAT_REDIS_MASTER": REDIS_MASTER,
        "CHAT_REDIS_USER": user,
        "CHAT_REDIS_PASSWORD_FILE": str(keys.file(f"redis-{user}")),
        "CHAT_REDIS_SENTINEL_PASSWORD_FILE": str(keys.file("redis-sentinel")),
    }
    if user in KAFKA_USERS:
        env |= {
            "CHAT_KAFKA_USER": user,
            "CHAT_KAFKA_PASSWORD_FILE": str(keys.file(f"kafka-{user}")),
        }
    if user in CASSANDRA_USERS:
        env |= {
            "CHAT_CASSANDRA_USER": user,
            "CHAT_CASSANDRA_PASSWORD_FILE": str(keys.file(f"cassandra-{user}")),
        }
    return env
