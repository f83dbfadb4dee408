"""SeaweedFS (Apache-2.0), built from the Go module proxy: the S3-compatible object store that
attachments go to. One ``weed server`` runs a master, a volume server, a filer and the S3
gateway; clients upload and download with URLs messaging presigns, so the bytes never pass
through our Python processes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from infra import install
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
    ports = {  # noqa: RUF012
        "S3": S3_PORT,
        "master": MASTER_PORT,
        "volume": VOLUME_PORT,
        "filer": FILER_PORT,
        **{
            f"{part} gRPC": port + GRPC_OFFSET
            for part, port in (
                ("master", MASTER_PORT),
                ("volume", VOLUME_PORT),
                ("filer", FILER_PORT),
                ("S3", S3_PORT),
            )
        },
    }
    ready_timeout = 90.0
    stop_grace = 10.0

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
            f"-master.port={MASTER_PORT}",
            f"-volume.port={VOLUME_PORT}",
            # Volumes of 1 GiB, at most 100. The defaults (30 GB volumes, as many as the free
            # space holds) leave two on a disk with 70 GB free: the filer's own may take both,
            # and the bucket then finds no volume to write in (seen after ./dev reset).
            f"-master.volumeSizeLimitMB={VOLUME_MB}",
            f"-volume.max={MAX_VOLUMES}",
            "-filer",
            f"-filer.port={FILER_PORT}",
            "-s3",
            f"-s3.port={S3_PORT}",
            f"-s3.config={ctx.layout.home(self.name) / 's3.json'}",
        ]

    def probe(self) -> bool:
        # An unsigned request is refused (403) once the gateway and the filer behind it answer.
        try:
            with urllib.request.urlopen(f"http://{self.host}:{S3_PORT}/", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except (urllib.error.URLError, OSError):
            return False

    def endpoints(self) -> list[str]:
        return [
            f"S3 http://{self.host}:{S3_PORT} (access key {ACCESS_KEY}, secret .infra/secrets/s3)"
        ]
