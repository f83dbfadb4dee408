"""Redis from Debian's redis-server package, on loopback, with an append-only file: the
single-node stack's one server, or the cluster's three nodes (one primary, two replicas) and
three sentinels (``redis-server --sentinel``) that fail the primary over when it dies.

In the cluster every client logs in as an ACL user of its own; the sentinels ask for a password
of theirs; replicas log in to the primary as the replication user.
"""

from __future__ import annotations

import shutil
from pathlib import Path
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
        acl = home / "users.acl"
        acl.write_text(users_acl(self._keys))
        acl.chmod(0o600)
        primary = self._primary()
        if primary is None and self.node != 1:
            primary = cluster.LOOPBACK.redis[1]
        config = home / "redis.conf"
        config.write_text(node_config(cluster.LOOPBACK, self.node, self._keys, data, acl, primary))
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
        config.write_text(sentinel_config(cluster.LOOPBACK, self.node, self._keys, home))
        config.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        return [_binary(), str(ctx.layout.home(self.name) / "sentinel.conf"), "--sentinel"]

    def endpoints(self) -> list[str]:
        return [f"sentinel 127.0.0.1:{self.port} (primary {cluster.REDIS_MASTER!r})"]


def users_acl(keys: cluster.Secrets) -> str:
    """The nodes' ACL file: a default user nobody can log in as, the operator, replication,
    the sentinels, and one user per service."""
    users = [
        # Off, with no password: nobody logs in as it. Its rights are still all there because
        # Redis replays the append-only file's MULTI/EXEC blocks (every script's effects) as
        # the default user and checks its rights again at EXEC (fixed upstream in 2025, not in
        # Debian's 7.0): without them a restarted node refused every transaction of its AOF,
        # losing them and logging each, and took over 30 s to start.
        "user default off resetpass ~* &* +@all",
        f"user admin on >{keys.password('redis-admin')} ~* &* +@all",
        f"user {cluster.REDIS_REPLICATION_USER} on"
        f" >{keys.password('redis-' + cluster.REDIS_REPLICATION_USER)}"
        " +psync +replconf +ping",
        # The sentinels watch, reconfigure and fail over the nodes.
        f"user sentinel on >{keys.password('redis-sentinel-user')} ~* &* +@all",
    ]
    for user in cluster.SERVICE_USERS:
        if user != "admin":
            users.append(f"user {user} on >{keys.password(f'redis-{user}')} {SERVICE_RIGHTS}")
    return "\n".join(users) + "\n"


def node_config(
    topology: cluster.Topology,
    node: int,
    keys: cluster.Secrets,
    data: Path | str,
    acl: Path | str,
    primary: tuple[str, int] | None,
) -> str:
    """``redis.conf`` of node ``node``: a replica of ``primary``, or a primary when that is
    None or the node itself."""
    host, port = topology.redis[node]
    lines = [
        f"bind {topology.bind}",
        # No user logs in without a password (the default user is off), so the nodes may
        # answer on addresses other than loopback.
        "protected-mode no",
        f"port {port}",
        f"dir {data}",
        "appendonly yes",
        'save ""',
        "daemonize no",
        'logfile ""',
        f"aclfile {acl}",
        f"masteruser {cluster.REDIS_REPLICATION_USER}",
        f"masterauth {keys.password('redis-' + cluster.REDIS_REPLICATION_USER)}",
        # What the sentinels tell clients this node is (its name in compose).
        f"replica-announce-ip {host}",
        # The command line is what `ps` shows: keep the config's path in it.
        'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
    ]
    if primary is not None and primary != (host, port):
        lines.append(f"replicaof {primary[0]} {primary[1]}")
    return "\n".join(lines) + "\n"


def sentinel_config(
    topology: cluster.Topology, node: int, keys: cluster.Secrets, home: Path | str
) -> str:
    """``sentinel.conf`` of sentinel ``node``, watching node 1 as the first primary."""
    host, port = topology.sentinels[node]
    primary_host, primary_port = topology.redis[1]
    password = keys.password("redis-sentinel")
    lines = [
        f"bind {topology.bind}",
        "protected-mode no",
        f"port {port}",
        f"dir {home}",
        "daemonize no",
        'logfile ""',
        f"requirepass {password}",
        # Nodes and sentinels are known by name in compose (by address on loopback).
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        f"sentinel announce-ip {host}",
        f"sentinel announce-port {port}",
        # What the sentinels say to one another.
        f"sentinel sentinel-pass {password}",
        f"sentinel monitor {cluster.REDIS_MASTER} {primary_host} {primary_port}"
        f" {cluster.SENTINEL_QUORUM}",
        f"sentinel auth-user {cluster.REDIS_MASTER} sentinel",
        f"sentinel auth-pass {cluster.REDIS_MASTER} {keys.password('redis-sentinel-user')}",
        f"sentinel down-after-milliseconds {cluster.REDIS_MASTER} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {cluster.REDIS_MASTER} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {cluster.REDIS_MASTER} 1",
    ]
    return "\n".join(lines) + "\n"
