"""Apache Kafka 4.x in KRaft mode from Maven Central: the single-node stack's one broker (also its
controller), or one of the cluster's three brokers (each also a controller; clients log in
with SASL/SCRAM, and only what an ACL allows is allowed)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra import cluster
from infra.commands import run_logged
from infra.console import detail
from infra.layout import Layout
from infra.services.base import Context
from infra.services.jvm import JvmService
from infra.templates import render_file

PORT = 9092
CONTROLLER_PORT = 9093
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaBase(JvmService):
    package = "kafka"
    # A broker SIGKILLed under load recovers every log before it answers: on the 2-core box,
    # with the cluster busy, that took over 90 s (clean-clone run 15).
    ready_timeout = 180.0
    stop_grace = 30.0
    heap_env = "CHAT_KAFKA_HEAP"
    #: The client port and the controller port.
    port: int
    controller_port: int

    def _config(self, ctx: Context) -> Path:
        return ctx.layout.home(self.name) / "server.properties"

    def _log4j(self, ctx: Context) -> str:
        return f"-Dlog4j2.configurationFile={ctx.layout.sources / 'kafka' / 'log4j2.properties'}"

    def _render(self, ctx: Context, data: Path) -> Path:
        raise NotImplementedError

    def _cluster_id_file(self, ctx: Context) -> Path:
        return ctx.layout.home(self.name) / "cluster-id"

    def wipe(self, ctx: Context) -> None:
        super().wipe(ctx)
        self._cluster_id_file(ctx).unlink(missing_ok=True)

    def _format_extra(self, ctx: Context) -> list[str]:
        """More arguments to the storage tool's format (the cluster's SCRAM users)."""
        return []

    def prepare(self, ctx: Context) -> None:
        data = ctx.layout.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        config = self._render(ctx, data)
        if (data / "meta.properties").is_file():
            return
        cluster_id_file = self._cluster_id_file(ctx)
        if not cluster_id_file.is_file():
            cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
            cluster_id_file.write_text(new_cluster_id() + "\n")
        cluster_id = cluster_id_file.read_text().strip()
        run_logged(
            [
                str(ctx.java),
                "-Xmx256m",
                self._log4j(ctx),
                "-cp",
                self.classpath(ctx),
                STORAGE_TOOL,
                "format",
                "--config",
                str(config),
                "--cluster-id",
                cluster_id,
                "--ignore-formatted",
                *self._format_extra(ctx),
            ],
            log=ctx.layout.build_log(f"{self.name}-format"),
            what=f"formatting the KRaft storage of {self.name}",
        )
        detail(f"formatted {data} (cluster id {cluster_id})")

    def command(self, ctx: Context) -> list[str]:
        return [
            *self.base_command(ctx),
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            self._log4j(ctx),
            f"-Dkafka.logs.dir={ctx.layout.logs(self.name)}",
            "-cp",
            self.classpath(ctx),
            MAIN_CLASS,
            str(self._config(ctx)),
        ]

    def _client(self) -> dict[str, str | int | float]:
        return {"bootstrap.servers": f"127.0.0.1:{self.port}"}

    def probe(self) -> bool:
        admin = AdminClient(
            {
                **self._client(),
                "socket.connection.setup.timeout.ms": 1000,
                # Refused connections are expected while polling; keep librdkafka quiet.
                "log_level": 0,
            }
        )
        try:
            metadata = admin.list_topics(timeout=2)
        except KafkaException:
            return False
        # This broker answers, and knows of itself as one of the cluster's.
        return any(broker.port == self.port for broker in metadata.brokers.values())

    def endpoints(self) -> list[str]:
        return [
            f"bootstrap 127.0.0.1:{self.port}",
            f"KRaft controller 127.0.0.1:{self.controller_port}",
        ]


class Kafka(KafkaBase):
    """The single-node stack's broker and controller."""

    name = "kafka"
    ports = {"client": PORT, "controller": CONTROLLER_PORT}  # noqa: RUF012
    default_heap = "512m"
    port = PORT
    controller_port = CONTROLLER_PORT

    def _render(self, ctx: Context, data: Path) -> Path:
        return render_file(
            ctx.layout.sources / "kafka" / "server.properties",
            self._config(ctx),
            {"port": PORT, "controller_port": CONTROLLER_PORT, "data_dir": data},
        )


class KafkaNode(KafkaBase):
    """Broker ``node`` of the cluster (and one of its three controllers)."""

    group = "kafka-cluster"
    default_heap = "384m"

    def __init__(self, node: int, layout: Layout) -> None:
        self.node = node
        self._keys = cluster.Secrets.of(layout)
        self.name = f"kafka-{node}"
        self.port = cluster.KAFKA_PORTS[node]
        self.controller_port = cluster.KAFKA_CONTROLLER_PORTS[node]
        self.ports = {"client": self.port, "controller": self.controller_port}

    def _cluster_id_file(self, ctx: Context) -> Path:
        # One id for the three: they form one cluster.
        return ctx.layout.state / "kafka-cluster" / "cluster-id"

    def _render(self, ctx: Context, data: Path) -> Path:
        values = broker_values(cluster.LOOPBACK, self.node, cluster.Secrets.of(ctx.layout), data)
        return render_file(
            ctx.layout.sources / "kafka" / "cluster.properties", self._config(ctx), values
        )

    def _format_extra(self, ctx: Context) -> list[str]:
        return scram_users(cluster.Secrets.of(ctx.layout))

    def _client(self) -> dict[str, str | int | float]:
        # ./dev asks as the operator (admin).
        return {
            "bootstrap.servers": f"127.0.0.1:{self.port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "admin",
            "sasl.password": self._keys.password("kafka-admin"),
        }


def new_cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_values(
    topology: cluster.Topology, node: int, keys: cluster.Secrets, data: Path | str
) -> dict[str, object]:
    """The values of ``cluster.properties`` for broker ``node`` of ``topology``."""
    host, port = topology.kafka[node]
    return {
        "node_id": node,
        "voters": topology.kafka_voters,
        "bind": topology.bind,
        "host": host,
        "port": port,
        "controller_port": topology.kafka_controllers[node][1],
        "data_dir": data,
        "broker_user": cluster.KAFKA_BROKER_USER,
        "broker_password": keys.password(f"kafka-{cluster.KAFKA_BROKER_USER}"),
        "controller_user": cluster.KAFKA_CONTROLLER_USER,
        "controller_password": keys.password(f"kafka-{cluster.KAFKA_CONTROLLER_USER}"),
    }


def scram_users(keys: cluster.Secrets) -> list[str]:
    """The storage tool's arguments that make the SCRAM users (the brokers' own, then one per
    service) when a broker's storage is formatted."""
    found = []
    for user in (cluster.KAFKA_BROKER_USER, *cluster.KAFKA_USERS):
        found += [
            "--add-scram",
            f"SCRAM-SHA-512=[name={user},password={keys.password(f'kafka-{user}')}]",
        ]
    return found
