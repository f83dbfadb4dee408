"""Apache Cassandra 5.0, one node, from Maven Central, on JDK 17."""

from __future__ import annotations

import logging

from cassandra import OperationTimedOut
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.policies import RoundRobinPolicy

from infra.services.base import Context
from infra.services.jvm import JvmService, options_file
from infra.templates import render_file

PORT = 9042
STORAGE_PORT = 7000
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"


class Cassandra(JvmService):
    name = "cassandra"
    ports = {"CQL": PORT, "storage": STORAGE_PORT}  # noqa: RUF012
    ready_timeout = 180.0
    stop_grace = 60.0
    heap_env = "CHAT_CASSANDRA_HEAP"
    default_heap = "1G"

    def prepare(self, ctx: Context) -> None:
        data = ctx.layout.data(self.name)
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        render_file(
            ctx.layout.sources / "cassandra" / "cassandra.yaml",
            ctx.layout.home(self.name) / "cassandra.yaml",
            {"port": PORT, "storage_port": STORAGE_PORT, "data_dir": data},
        )

    def command(self, ctx: Context) -> list[str]:
        home = ctx.layout.home(self.name)
        jamm = sorted(self.lib(ctx).glob("jamm-*.jar"))
        data = ctx.layout.data(self.name)
        logback = ctx.layout.sources / "cassandra" / "logback.xml"
        return [
            *self.base_command(ctx),
            # jamm measures object sizes for memtable accounting; Cassandra dies without it.
            *(f"-javaagent:{jar}" for jar in jamm[-1:]),
            *options_file(ctx.layout.sources / "cassandra" / "jvm17.options"),
            f"-Dcassandra.config=file://{home / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.triggers_dir={data / 'triggers'}",
            f"-Dcassandra.logdir={ctx.layout.logs(self.name)}",
            f"-Dlogback.configurationFile=file://{logback}",
            "-cp",
            self.classpath(ctx),
            MAIN_CLASS,
        ]

    def probe(self) -> bool:
        # The driver logs each refused connection as a warning; while polling that is noise.
        for name in ("cassandra.cluster", "cassandra.pool", "cassandra.connection"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        cluster = Cluster(
            ["127.0.0.1"],
            port=PORT,
            connect_timeout=2,
            control_connection_timeout=2,
            load_balancing_policy=RoundRobinPolicy(),
            protocol_version=5,
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return row is not None
        except (NoHostAvailable, OperationTimedOut, OSError):
            return False
        finally:
            cluster.shutdown()

    def endpoints(self) -> list[str]:
        return [f"CQL 127.0.0.1:{PORT}"]
