"""Redis from Debian's redis-server package, on loopback, with an append-only file: the
single-node stack's one server, or the cluster's three nodes (one primary, two replicas) and
three sentinels (``redis-server --sentinel``) that fail the primary over when it dies.

In the cluster every client logs in as an ACL user of its own; the sentinels ask for a password
of theirs; replicas log in to the primary as the replication user.
"""

from __future__ import annotations

import shutil
from typing import Any

import redis

from infra import cluster, install
from infra.console import detail
from infra.layout import Layout
from infra.services.base import Context, Service

PORT = 6379
#: A sentinel calls the primary down after this long without an answer.
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10000
#: What our services may not run (the rest of Redis is theirs): administration, and commands
#: that would hurt everyone (wiping data, scanning every key).
SERVICE_RIGHTS = "~* &* +@all -@admin +role -flushall -flushdb -keys"


def _binary() -> str:
    return shutil.which("redis-server") or "redis-server"


class RedisBase(Service):
    ready_timeout = 30.0
    stop_grace = 10.0
    port: int

    def install(self, ctx: Context) -> None:
        binary = install.redis_server(ctx.layout)
        detail(install.redis_version(binary))

    def _login(self) -> tuple[str | None, str | None]:
        """The user and password ./dev logs in with (none on the single node)."""
        return None, None

    def _client(self) -> redis.Redis:
        user, password = self._login()
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            username=user,
            password=password,
            socket_connect_timeout=1,
            socket_timeout=1,
        )

    def probe(self) -> bool:
        client = self._client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def endpoints(self) -> list[str]:
        return [f"redis://127.0.0.1:{self.port}"]


class Redis(RedisBase):
    """The single-node stack's Redis."""

    name = "redis"
    ports = {"client": PORT}  # noqa: RUF012
    port = PORT

    def prepare(self, ctx: Context) -> None:
        ctx.layout.data(self.name).mkdir(parents=True, exist_ok=True)

    def command(self, ctx: Context) -> list[str]:
        return [
            _binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--dir",
            str(ctx.layout.data(self.name)),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]


class RedisNode(RedisBase):
    """Node ``node`` of the replicated set: the primary at first if it is node 1, a replica of
    whichever node the sentinels say is the primary otherwise (so a node that comes back after
    a failover never serves as a primary with stale data)."""

    def __init__(self, node: int, layout: Layout) -> None:
        self.node = node
        self.name = f"redis-{node}"
        self.port = cluster.REDIS_PORTS[node]
        self.ports = {"client": self.port}
        self._keys = cluster.Secrets.of(layout)

    def _login(self) -> tuple[str | None, str | None]:
        return cluster.ADMIN, self._keys.password(f"redis-{cluster.ADMIN}")

    def role(self) -> str:
        client = self._client()
        try:
            found = client.role()
        except redis.RedisError:
            return ""
        finally:
            client.close()
        kind = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
        return {"master": "primary", "slave": "replica"}.get(kind, kind)

    def _primary(self) -> tuple[str, int] | None:
        """The primary the sentinels name now (None when none answers: a fresh start)."""
        for port in cluster.SENTINEL_PORTS.values():
            client = redis.Redis(
                host="127.0.0.1",
                port=port,
                password=self._keys.password("redis-sentinel"),
                socket_connect_timeout=1,
                socket_timeout=1,
            )
            try:
                # (host, port), or None for a name it does not watch; the stubs say bool.
                found: Any = client.sentinel_get_master_addr_by_name(cluster.REDIS_MASTER)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if found:
                host, port_text = found
                host = host.decode() if isinstance(host, bytes) else str(host)
                return host, int(port_text)
        return None

    def prepare(self, ctx: Context) -> None:
        home, data = ctx.layout.home(self.name), ctx.layout.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        users = [
            "user default off",
            f"user admin on >{self._keys.password('redis-admin')} ~* &* +@all",
            f"user {cluster.REDIS_REPLICATION_USER} on"
            f" >{self._keys.password('redis-' + cluster.REDIS_REPLICATION_USER)}"
            " +psync +replconf +ping",
            # The sentinels watch, reconfigure and fail over the nodes.
            f"user sentinel on >{self._keys.password('redis-sentinel-user')} ~* &* +@all",
        ]
        for user in cluster.SERVICE_USERS:
            if user != "admin":
                password = self._keys.password(f"redis-{user}")
                users.append(f"user {user} on >{password} {SERVICE_RIGHTS}")
        (home / "users.acl").write_text("\n".join(users) + "\n")
        (home / "users.acl").chmod(0o600)
        primary = self._primary()
        if primary is None and self.node != 1:
            primary = ("127.0.0.1", cluster.REDIS_PORTS[1])
        if primary == ("127.0.0.1", self.port):
            primary = None
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {data}",
            "appendonly yes",
            'save ""',
            "daemonize no",
            'logfile ""',
            f"aclfile {home / 'users.acl'}",
            f"masteruser {cluster.REDIS_REPLICATION_USER}",
            f"masterauth {self._keys.password('redis-' + cluster.REDIS_REPLICATION_USER)}",
            # The command line is what `ps` shows: keep the config's path in it.
            'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
        ]
        if primary is not None:
            lines.append(f"replicaof {primary[0]} {primary[1]}")
        config = home / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        return [_binary(), str(ctx.layout.home(self.name) / "redis.conf")]


class SentinelNode(RedisBase):
    """Sentinel ``node``: with two others it decides when the primary is down and which replica
    takes over."""

    group = "sentinels"

    def __init__(self, node: int, layout: Layout) -> None:
        self.node = node
        self.name = f"sentinel-{node}"
        self.port = cluster.SENTINEL_PORTS[node]
        self.ports = {"sentinel": self.port}
        self._keys = cluster.Secrets.of(layout)

    def _login(self) -> tuple[str | None, str | None]:
        return None, self._keys.password("redis-sentinel")

    def wipe(self, ctx: Context) -> None:
        super().wipe(ctx)
        # What it learnt (the primary, the epochs) goes with the data it was about.
        (ctx.layout.home(self.name) / "sentinel.conf").unlink(missing_ok=True)

    def prepare(self, ctx: Context) -> None:
        home = ctx.layout.home(self.name)
        home.mkdir(parents=True, exist_ok=True)
        config = home / "sentinel.conf"
        if config.is_file():
            return  # the sentinel keeps it (the primary it follows now, the epochs)
        password = self._keys.password("redis-sentinel")
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {home}",
            "daemonize no",
            'logfile ""',
            f"requirepass {password}",
            # What the sentinels say to one another.
            f"sentinel sentinel-pass {password}",
            f"sentinel monitor {cluster.REDIS_MASTER} 127.0.0.1 {cluster.REDIS_PORTS[1]}"
            f" {cluster.SENTINEL_QUORUM}",
            f"sentinel auth-user {cluster.REDIS_MASTER} sentinel",
            f"sentinel auth-pass {cluster.REDIS_MASTER}"
            f" {self._keys.password('redis-sentinel-user')}",
            f"sentinel down-after-milliseconds {cluster.REDIS_MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {cluster.REDIS_MASTER} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {cluster.REDIS_MASTER} 1",
        ]
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        return [_binary(), str(ctx.layout.home(self.name) / "sentinel.conf"), "--sentinel"]

    def endpoints(self) -> list[str]:
        return [f"sentinel 127.0.0.1:{self.port} (primary {cluster.REDIS_MASTER!r})"]
