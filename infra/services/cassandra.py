"""Apache Cassandra 5.0 from Maven Central, on JDK 17: the single-node stack's node, or one of
the cluster's three (each on a loopback address of its own, with its own JMX port for
``nodetool``)."""

from __future__ import annotations

import logging

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import WhiteListRoundRobinPolicy

from infra import cluster
from infra.layout import Layout
from infra.services.base import Context
from infra.services.jvm import JvmService, options_file
from infra.templates import render_file

PORT = 9042
STORAGE_PORT = 7000
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
NODETOOL = "org.apache.cassandra.tools.NodeTool"
#: How long the probe waits for a connection and its login (see probe).
LOGIN_TIMEOUT = 15.0


class CassandraBase(JvmService):
    package = "cassandra"
    # A node restarted while the other two and the services saturate both cores (the fault
    # suite) has taken 100 s to start and more to answer its first login.
    ready_timeout = 300.0
    stop_grace = 60.0
    heap_env = "CHAT_CASSANDRA_HEAP"
    jmx_port: int

    def _values(self, ctx: Context) -> dict[str, object]:
        raise NotImplementedError

    def _flags(self) -> list[str]:
        """JVM flags that differ between the single node and a node of the cluster."""
        raise NotImplementedError

    def prepare(self, ctx: Context) -> None:
        data = ctx.layout.data(self.name)
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "triggers"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        render_file(
            ctx.layout.sources / "cassandra" / "cassandra.yaml",
            ctx.layout.home(self.name) / "cassandra.yaml",
            {
                "port": PORT,
                "storage_port": STORAGE_PORT,
                "data_dir": data,
                "address": self.host,
                **self._values(ctx),
            },
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
            *self._flags(),
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            f"-Dcassandra.config=file://{home / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.triggers_dir={data / 'triggers'}",
            f"-Dcassandra.logdir={ctx.layout.logs(self.name)}",
            f"-Dlogback.configurationFile=file://{logback}",
            "-cp",
            self.classpath(ctx),
            MAIN_CLASS,
        ]

    def nodetool(self, ctx: Context, *args: str) -> list[str]:
        """The command line of ``nodetool <args>`` against this node."""
        return [
            str(ctx.java),
            "-Xmx128m",
            *(f for f in options_file(ctx.layout.sources / "cassandra" / "jvm17.options")
              if f.startswith("--add-")),
            "-cp",
            self.classpath(ctx),
            NODETOOL,
            "-h",
            "127.0.0.1",
            "-p",
            str(self.jmx_port),
            *args,
        ]  # fmt: skip

    def _auth(self) -> PlainTextAuthProvider | None:
        return None

    def probe(self) -> bool:
        # The driver logs each refused connection as a warning; while polling that is noise.
        for name in ("cassandra.cluster", "cassandra.pool", "cassandra.connection"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        client = Cluster(
            [self.host],
            port=PORT,
            # With logins on, a node that has just restarted under load answers a login only
            # after seconds (a bcrypt check, its JIT cold, every client reconnecting): a probe
            # that gave up sooner would never see it ready, and would add to its queue.
            connect_timeout=LOGIN_TIMEOUT,
            control_connection_timeout=LOGIN_TIMEOUT,
            execution_profiles={
                # This node alone answers (not another node of the ring the driver learns of).
                EXEC_PROFILE_DEFAULT: ExecutionProfile(
                    load_balancing_policy=WhiteListRoundRobinPolicy([self.host])
                )
            },
            auth_provider=self._auth(),
            protocol_version=5,
        )
        try:
            session = client.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return row is not None
        except NoHostAvailable as exc:
            # Refusing the login is answering: the roles are set up after the nodes start.
            return refused_login(exc)
        except (OperationTimedOut, OSError):
            return False
        finally:
            client.shutdown()

    def endpoints(self) -> list[str]:
        return [f"CQL {self.host}:{PORT}", f"JMX 127.0.0.1:{self.jmx_port}"]


class Cassandra(CassandraBase):
    """The single-node stack's Cassandra."""

    name = "cassandra"
    ports = {"CQL": PORT, "storage": STORAGE_PORT}  # noqa: RUF012
    default_heap = "1G"
    jmx_port = 7199

    def _values(self, ctx: Context) -> dict[str, object]:
        return {
            "cluster_name": "chat-dev",
            "initial_token": 0,
            "seeds": f"{self.host}:{STORAGE_PORT}",
            "memtable_space": "128MiB",
            "authenticator": "AllowAllAuthenticator",
            "authorizer": "AllowAllAuthorizer",
        }

    def _flags(self) -> list[str]:
        # One fresh node: no gossip to wait for, no fsync of system tables.
        return ["-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.unsafesystem=true"]


def refused_login(exc: NoHostAvailable) -> bool:
    """Whether the node answered by refusing the login. The driver gives its errors by host
    when no connection was made, but only the hosts' addresses when the control connection
    was made and the session's pool was not (a node half up, seen under load)."""
    errors = exc.errors.values() if isinstance(exc.errors, dict) else []
    return any(isinstance(e, AuthenticationFailed) for e in errors)


#: JVM flags of a cluster node: a joining node waits this long for the ring to settle (30 s by
#: default), and no longer for gossip.
NODE_FLAGS = ("-Dcassandra.ring_delay_ms=5000", "-Dcassandra.skip_wait_for_gossip_to_settle=0")


def node_values(topology: cluster.Topology, node: int) -> dict[str, object]:
    """The values of ``cassandra.yaml`` that make node ``node`` of ``topology`` (the rest:
    its address, ports and folders)."""
    return {
        "cluster_name": "chat-cluster",
        "initial_token": cluster.CASSANDRA_TOKENS[node],
        "seeds": f"{topology.cassandra[1]}:{STORAGE_PORT}",
        "memtable_space": "64MiB",
        "authenticator": "PasswordAuthenticator",
        "authorizer": "CassandraAuthorizer",
    }


class CassandraNode(CassandraBase):
    """Node ``node`` of the three-node cluster; node 1 is the seed."""

    default_heap = "512M"

    def __init__(self, node: int, layout: Layout) -> None:
        self.node = node
        self.name = f"cassandra-{node}"
        self.host = cluster.CASSANDRA_ADDRESSES[node]
        self.jmx_port = cluster.CASSANDRA_JMX_PORTS[node]
        self.ports = {"CQL": PORT, "storage": STORAGE_PORT}
        self._keys = cluster.Secrets.of(layout)

    def _values(self, ctx: Context) -> dict[str, object]:
        return node_values(cluster.LOOPBACK, self.node)

    def _flags(self) -> list[str]:
        return list(NODE_FLAGS)

    def _auth(self) -> PlainTextAuthProvider | None:
        admin = self._keys.folder / "cassandra-admin"
        password = admin.read_text().strip() if admin.is_file() else "-"
        return PlainTextAuthProvider("admin", password)
