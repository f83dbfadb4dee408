"""HAProxy from Debian's package before the cluster's BFFs (browsers, on :8080) and config
services (operators, on :7301), checking each process's ``/readyz`` every second. Both ports
speak TLS with the cluster's certificate (``infra/tls.py``).

A process that fails its check, stops or dies gets no new request, and a request it never
answered is sent to another one (``infra/haproxy/haproxy.cfg``). WebSockets pass through.
"""

from __future__ import annotations

import csv
import io
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra import catalog, cluster, install, modes, tls
from infra.catalog import App
from infra.console import detail
from infra.services import seaweedfs
from infra.services.base import Context, Service
from infra.templates import render_file

WEB_PORT = 8080
ADMIN_PORT = 7301
STATS_PORT = 8404


@dataclass(frozen=True)
class Backend:
    """One process behind the balancer: where it serves, and its ops port to check."""

    name: str
    address: str
    ops_port: int


def values(
    host: str,
    bffs: list[Backend],
    configs: list[Backend],
    certificate: Path | None = None,
    object_stores: list[Backend] | None = None,
) -> dict[str, object]:
    """What ``infra/haproxy/haproxy.cfg`` is filled with (here, and for compose): the client
    ports speak TLS with ``certificate`` (its chain and key in one file) when one is given;
    S3 requests go to the ``object_stores``' gateways, when there are some."""
    # ALPN offers HTTP/1.1 alone: WebSockets upgrade from it, and the BFFs speak nothing else.
    tls = f" ssl crt {certificate} alpn http/1.1" if certificate is not None else ""
    return {
        "host": host,
        "tls": tls,
        "web_port": WEB_PORT,
        "admin_port": ADMIN_PORT,
        "stats_port": STATS_PORT,
        "bff_servers": _server_lines(bffs),
        "config_servers": _server_lines(configs),
        "object_store": _object_store(host, object_stores or []),
    }


def _object_store(host: str, gateways: list[Backend]) -> str:
    """The S3 frontend, in plain HTTP: presigned URLs are signed for it (the requests pass
    through with their Host header), and a page of the BFF on https may fetch from loopback.
    One gateway at a time (``balance first``, in the order given): each filer learns the
    others' files a moment later, so what a client just uploaded is read where it was
    written while that gateway lives."""
    if not gateways:
        return ""
    return "\n".join(
        [
            "frontend object_store",
            f"    bind {host}:{seaweedfs.S3_PORT}",
            "    default_backend object_stores",
            "",
            "backend object_stores",
            "    balance first",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
            _server_lines(gateways),
        ]
    )


def _server_lines(backends: list[Backend]) -> str:
    return "\n".join(f"    server {b.name} {b.address} check port {b.ops_port}" for b in backends)


def serving(server: str) -> bool | None:
    """Whether the balancer sends requests to ``server`` (its check passed), None when no
    balancer answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{STATS_PORT}/stats;csv", timeout=2) as r:
            rows = csv.reader(io.StringIO(r.read().decode()))
            header = next(rows)
            status = header.index("status")
            return any(row[1] == server and row[status] == "UP" for row in rows)
    except (urllib.error.URLError, OSError, StopIteration, ValueError):
        return None


def _local(apps: list[App], port_setting: str) -> list[Backend]:
    return [Backend(a.name, f"127.0.0.1:{a.env[port_setting]}", a.ops_port) for a in apps]


class Balancer(Service):
    name = "balancer"
    ports = {  # noqa: RUF012
        "HTTP": WEB_PORT,
        "admin HTTP": ADMIN_PORT,
        "stats": STATS_PORT,
        "S3": seaweedfs.S3_PORT,
    }
    ready_timeout = 30.0
    stop_grace = 10.0

    def install(self, ctx: Context) -> None:
        binary = install.debian_program(ctx.layout, "haproxy", "haproxy", "HAProxy (2.x)")
        detail(str(binary))

    def _config(self, ctx: Context) -> str:
        return str(ctx.layout.home(self.name) / "haproxy.cfg")

    def prepare(self, ctx: Context) -> None:
        render_file(
            ctx.layout.sources / "haproxy" / "haproxy.cfg",
            ctx.layout.home(self.name) / "haproxy.cfg",
            values(
                self.host,
                _local(catalog.behind_the_balancer(modes.CLUSTER, "bff"), "CHAT_BFF_PORT"),
                _local(
                    catalog.behind_the_balancer(modes.CLUSTER, "config_service"),
                    "CHAT_CONFIG_PORT",
                ),
                tls.Files.of(ctx.layout).bundle,
                [
                    Backend(n.name, f"{n.host}:{n.s3_port}", n.s3_port)
                    for n in (seaweedfs.SeaweedFSNode(node) for node in cluster.NODES)
                ],
            ),
        )

    def command(self, ctx: Context) -> list[str]:
        # -db: in the foreground, as ./dev runs every process; -W: master-worker, so a
        # SIGUSR2 reloads the config without dropping connections.
        return [shutil.which("haproxy") or "haproxy", "-db", "-W", "-f", self._config(ctx)]

    def probe(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.host}:{STATS_PORT}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def endpoints(self) -> list[str]:
        return [
            f"HTTPS https://{self.host}:{WEB_PORT} (the BFFs; CA .infra/secrets/tls/ca.pem)",
            f"HTTPS https://{self.host}:{ADMIN_PORT} (the config services)",
            f"stats http://{self.host}:{STATS_PORT}/stats",
            f"S3 http://{self.host}:{seaweedfs.S3_PORT} (the object store's gateways; access"
            f" key {seaweedfs.ACCESS_KEY}, secret .infra/secrets/s3)",
        ]
