"""SeaweedFS (Apache-2.0), built from the Go module proxy: the S3-compatible object store that
attachments go to. One ``weed server`` runs a master, a volume server, a filer and the S3
gateway; clients upload and download with URLs messaging presigns, so the bytes never pass
through our Python processes.

The cluster runs three (:class:`SeaweedFSNode`), one per loopback address of the Cassandra
nodes: the masters elect a leader among themselves, every file goes to the volume servers of
two nodes, and each filer keeps the whole namespace (it follows the others' changes), so any
node's gateway serves any file. The balancer sends S3 requests to one gateway at a time, the
first that answers, so a file is read through the gateway that wrote it while that one lives.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from infra import cluster, install
from infra.console import detail
from infra.layout import Layout
from infra.secret_files import secret, secret_path
from infra.services.base import Context, Service

S3_PORT = 8333
MASTER_PORT = 9333
VOLUME_PORT = 8380
FILER_PORT = 8888
#: Each of those also listens on its port + 10000 for gRPC between the parts.
GRPC_OFFSET = 10000
VOLUME_MB = 1024
MAX_VOLUMES = 100
#: The one identity our services sign with (its secret is .infra/secrets/s3).
ACCESS_KEY = "chat"


def secret_key_file(layout: Layout) -> Path:
    secret(layout, "s3")
    return secret_path(layout, "s3")


class SeaweedFS(Service):
    name = "seaweedfs"
    #: Added to each of its ports (a cluster node's own; see SeaweedFSNode).
    port_offset = 0

    @property
    def s3_port(self) -> int:
        return S3_PORT + self.port_offset

    @property
    def master_port(self) -> int:
        return MASTER_PORT + self.port_offset

    @property
    def ports(self) -> dict[str, int]:  # type: ignore[override]
        own = {
            "S3": self.s3_port,
            "master": self.master_port,
            "volume": VOLUME_PORT + self.port_offset,
            "filer": FILER_PORT + self.port_offset,
        }
        return {**own, **{f"{part} gRPC": port + GRPC_OFFSET for part, port in own.items()}}

    ready_timeout = 90.0
    # This build does not end on SIGTERM (seen: it logs nothing and runs on for the whole
    # grace); an upload it answered is in its files already (the page cache keeps it across
    # a SIGKILL), so waiting longer buys nothing.
    stop_grace = 3.0

    def install(self, ctx: Context) -> None:
        binary = install.go_binary(ctx.layout, install.SEAWEEDFS)
        detail(f"{binary} = SeaweedFS ({install.SEAWEEDFS.module}@{install.SEAWEEDFS.version})")

    def prepare(self, ctx: Context) -> None:
        home = ctx.layout.home(self.name)
        home.mkdir(parents=True, exist_ok=True)
        ctx.layout.data(self.name).mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": ACCESS_KEY,
                    "credentials": [
                        {"accessKey": ACCESS_KEY, "secretKey": secret(ctx.layout, "s3")}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = home / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)

    def command(self, ctx: Context) -> list[str]:
        return [
            str(ctx.layout.bin / install.SEAWEEDFS.name),
            "server",
            f"-dir={ctx.layout.data(self.name)}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={self.master_port}",
            *self.replicas(),
            f"-volume.port={self.ports['volume']}",
            # Volumes of 1 GiB, at most 100. The defaults (30 GB volumes, as many as the free
            # space holds) leave two on a disk with 70 GB free: the filer's own may take both,
            # and the bucket then finds no volume to write in (seen after ./dev reset).
            f"-master.volumeSizeLimitMB={VOLUME_MB}",
            f"-volume.max={MAX_VOLUMES}",
            "-filer",
            f"-filer.port={self.ports['filer']}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.config={ctx.layout.home(self.name) / 's3.json'}",
        ]

    def replicas(self) -> list[str]:
        """What makes this store one of several: nothing, alone."""
        return []

    def probe(self) -> bool:
        # An unsigned request is refused (403) once the gateway and the filer behind it answer.
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.s3_port}/", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except (urllib.error.URLError, OSError):
            return False

    def endpoints(self) -> list[str]:
        return [
            f"S3 http://{self.host}:{self.s3_port} (access key {ACCESS_KEY}, secret"
            " .infra/secrets/s3)"
        ]


class SeaweedFSNode(SeaweedFS):
    """Node ``node`` of the cluster's object store (see the module's words)."""

    group = "seaweedfs-cluster"
    #: A master waits out an election before it answers; three start together.
    ready_timeout = 120.0

    def __init__(self, node: int) -> None:
        self.node = node
        self.name = f"seaweedfs-{node}"
        self.host = cluster.OBJECT_STORE_ADDRESSES[node]
        # Ports of its own, though each node has an address of its own: the parts of a node
        # also talk over Unix sockets named by port (/tmp/seaweedfs-master-grpc-<port>.sock),
        # and with one port for all three a node's volume server heartbeat reached another
        # node's master (seen: it never joined, every file went to the other two).
        self.port_offset = node

    def replicas(self) -> list[str]:
        masters = ",".join(
            f"{cluster.OBJECT_STORE_ADDRESSES[n]}:{MASTER_PORT + n}" for n in cluster.NODES
        )
        return [
            f"-master.peers={masters}",
            f"-master.defaultReplication={cluster.OBJECT_STORE_REPLICATION}",
            # A dead leader is replaced within seconds, not the default ten.
            "-master.electionTimeout=3s",
        ]
