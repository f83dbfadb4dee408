"""The cluster of ``compose.cluster.yaml``: its config files and its logins, made by the code
that makes ``./dev up --cluster``'s (``infra.services``, ``infra.access``), with the
containers' names (:data:`infra.cluster.COMPOSE`) where ``./dev`` has loopback addresses.

Run inside the project's image by two one-shot compose services::

    python -m infra.compose_cluster render    # cluster-config, as root, before any node starts
    python -m infra.compose_cluster roles     # setup, before the schema migrations
    python -m infra.compose_cluster grants    # setup, after them

``render`` makes the secrets on the first run and keeps them; it writes each node's files into
the volume only that kind of node mounts, owned by the user its official image runs as.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from infra import access, cluster
from infra.layout import PROJECT_ROOT
from infra.services import balancer, cassandra, kafka, redis
from infra.templates import render_file

#: Where the volumes are mounted, in every container that mounts them.
ROOT = Path("/cluster")
#: One volume per kind of reader, and the uid that reads it: the official images run Kafka as
#: ``appuser`` (1000), Cassandra and Redis as uids 999; the project's image runs as nobody.
#: ``secrets`` (every credential) is mounted by the two one-shot services only.
OWNERS = {
    "secrets": 65534,
    "kafka": 1000,
    "cassandra": 999,
    "redis": 999,
    "apps": 65534,
    # The official HAProxy image runs as haproxy (99).
    "balancer": 99,
}
#: Inside the official images: where each keeps its data.
KAFKA_DATA = "/var/lib/kafka/data"
CASSANDRA_DATA = "/var/lib/cassandra"
REDIS_DATA = "/data"
KAFKA_BIN = "/opt/kafka/bin"
#: Where our services' own logins are, in the volume they mount.
APP_SECRETS = "apps/secrets"


def all_secrets(root: Path = ROOT) -> cluster.Secrets:
    """Every credential of the cluster (made on first use, then kept)."""
    return cluster.Secrets(root / "secrets")


def app_secrets(root: Path = ROOT) -> cluster.Secrets:
    """The credentials our services read: each service's own logins."""
    return cluster.Secrets(root / APP_SECRETS)


def render(root: Path = ROOT) -> None:
    keys = all_secrets(root)
    topology = cluster.COMPOSE
    templates = PROJECT_ROOT / "infra"

    cluster_id = root / "kafka" / "cluster-id"
    if not cluster_id.is_file():
        _write(cluster_id, kafka.new_cluster_id() + "\n")
    for node in cluster.NODES:
        home = root / "kafka" / f"kafka-{node}"
        config = render_file(
            templates / "kafka" / "cluster.properties",
            home / "server.properties",
            kafka.broker_values(topology, node, keys, KAFKA_DATA),
        )
        config.chmod(0o600)
        # Format once (with the SCRAM users), then run: what ./dev does for a broker.
        format_command = [
            f"{KAFKA_BIN}/kafka-storage.sh",
            "format",
            "--config",
            str(config),
            "--cluster-id",
            cluster_id.read_text().strip(),
            "--ignore-formatted",
            *kafka.scram_users(keys),
        ]
        _write(
            home / "start.sh",
            "#!/bin/bash\n# Made by infra/compose_cluster.py.\nset -euo pipefail\n"
            f"{shlex.join(format_command)}\n"
            f"exec {KAFKA_BIN}/kafka-server-start.sh {shlex.quote(str(config))}\n",
        )
        # The health check's login (as the operator).
        password = keys.password(f"kafka-{cluster.ADMIN}")
        _write(
            home / "admin.properties",
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="{cluster.ADMIN}" password="{password}";\n',
        )

    for node in cluster.NODES:
        render_file(
            templates / "cassandra" / "cassandra.yaml",
            root / "cassandra" / f"cassandra-{node}" / "cassandra.yaml",
            {
                "port": cluster.CASSANDRA_PORT,
                "storage_port": cluster.CASSANDRA_STORAGE_PORT,
                "data_dir": CASSANDRA_DATA,
                "address": topology.cassandra[node],
                **cassandra.node_values(topology, node),
            },
        )

    acl = root / "redis" / "users.acl"
    _write(acl, redis.users_acl(keys))
    for node in cluster.NODES:
        # Written once: a node's and a sentinel's files are theirs afterwards (a failover
        # rewrites them: who is the primary, the epochs).
        config = root / "redis" / f"redis-{node}" / "redis.conf"
        primary = None if node == 1 else topology.redis[1]
        if not config.is_file():
            _write(config, redis.node_config(topology, node, keys, REDIS_DATA, acl, primary))
        home = root / "redis" / f"sentinel-{node}"
        if not (home / "sentinel.conf").is_file():
            _write(home / "sentinel.conf", redis.sentinel_config(topology, node, keys, home))

    # Each BFF and config service container listens on the port compose.yaml gives it.
    render_file(
        templates / "haproxy" / "haproxy.cfg",
        root / "balancer" / "haproxy.cfg",
        balancer.values(
            "0.0.0.0",
            [balancer.Backend(name, f"{name}:8080", 9401) for name in ("bff", "bff-2")],
            [
                balancer.Backend(name, f"{name}:7301", 9501)
                for name in ("config-service", "config-service-2")
            ],
        ),
    )

    for user in cluster.SERVICE_USERS:
        for name in cluster.service_secrets(user):
            _write(app_secrets(root).folder / name, keys.password(name))

    if os.geteuid() == 0:
        for volume, uid in OWNERS.items():
            _own(root / volume, uid)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o700 if path.suffix == ".sh" else 0o600)


def _own(folder: Path, uid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, uid)
        if path.is_dir():
            path.chmod(0o700)


def main(argv: list[str]) -> int:
    steps = {
        "render": lambda: render(),
        "roles": lambda: access.cassandra_roles(cluster.COMPOSE, all_secrets()),
        "grants": lambda: access.grants(cluster.COMPOSE, all_secrets()),
    }
    if len(argv) != 1 or argv[0] not in steps:
        print(f"usage: python -m infra.compose_cluster {{{'|'.join(steps)}}}", file=sys.stderr)
        return 2
    steps[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
