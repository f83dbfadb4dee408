"""Apache Kafka 4.x, single-node KRaft (broker and controller in one JVM), from Maven Central."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra.commands import run_logged
from infra.console import detail
from infra.services.base import Context
from infra.services.jvm import JvmService
from infra.templates import render_file

PORT = 9092
CONTROLLER_PORT = 9093
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class Kafka(JvmService):
    name = "kafka"
    ports = {"client": PORT, "controller": CONTROLLER_PORT}  # noqa: RUF012
    ready_timeout = 90.0
    stop_grace = 30.0
    heap_env = "CHAT_KAFKA_HEAP"
    default_heap = "512m"

    def _config(self, ctx: Context) -> Path:
        return ctx.layout.home(self.name) / "server.properties"

    def _log4j(self, ctx: Context) -> str:
        return f"-Dlog4j2.configurationFile={ctx.layout.sources / 'kafka' / 'log4j2.properties'}"

    def prepare(self, ctx: Context) -> None:
        home = ctx.layout.home(self.name)
        data = ctx.layout.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        config = render_file(
            ctx.layout.sources / "kafka" / "server.properties",
            home / "server.properties",
            {"port": PORT, "controller_port": CONTROLLER_PORT, "data_dir": data},
        )
        if (data / "meta.properties").is_file():
            return
        cluster_id_file = home / "cluster-id"
        if not cluster_id_file.is_file():
            # KRaft wants a 16-byte id in URL-safe base64 without padding.
            raw = uuid.uuid4().bytes
            cluster_id_file.write_text(base64.urlsafe_b64encode(raw).decode().rstrip("=") + "\n")
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
            ],
            log=ctx.layout.build_log("kafka-format"),
            what="formatting the Kafka KRaft storage",
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

    def probe(self) -> bool:
        admin = AdminClient(
            {
                "bootstrap.servers": f"127.0.0.1:{PORT}",
                "socket.connection.setup.timeout.ms": 1000,
                # Refused connections are expected while polling; keep librdkafka quiet.
                "log_level": 0,
            }
        )
        try:
            metadata = admin.list_topics(timeout=2)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def endpoints(self) -> list[str]:
        return [f"bootstrap 127.0.0.1:{PORT}", f"KRaft controller 127.0.0.1:{CONTROLLER_PORT}"]
