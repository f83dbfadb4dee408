"""The cluster's own certificate authority, and the certificate every port a client reaches
presents: the balancer's HTTPS and WebSocket port, and the messaging servers' and history
query processes' gRPC ports.

``./dev up --cluster`` makes them with Debian's ``openssl`` into ``.infra/secrets/tls/``:

- ``ca.pem`` is what a client trusts (the terminal client's ``--ca``, a browser's import);
  ``ca.key`` never leaves this folder.
- ``server.pem`` and ``server.key`` are presented by our gRPC servers; ``server-bundle.pem``
  (the two in one file) by HAProxy.

The server certificate names what clients dial on this machine (127.0.0.1, localhost). It is
made again when it is missing, runs out within :data:`RENEW_BEFORE_DAYS`, or is older than the
CA (a new CA was made); the CA is kept, so clients keep trusting what they trusted.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra import install
from infra.console import detail
from infra.errors import StepFailed
from infra.layout import Layout

#: What the server certificate names: where clients dial on loopback.
NAMES = ("IP:127.0.0.1", "DNS:localhost")
CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE_DAYS = 30
#: P-256: what every client here (gRPC's BoringSSL, OpenSSL, Chromium) takes, and its
#: handshakes cost less CPU than RSA's.
KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Files:
    folder: Path

    @classmethod
    def of(cls, layout: Layout) -> Files:
        return cls(layout.state / "secrets" / "tls")

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"

    @property
    def bundle(self) -> Path:
        """The certificate, then its key: the one file HAProxy's ``crt`` reads."""
        return self.folder / "server-bundle.pem"


def ensure(layout: Layout) -> Files:
    """The CA and a current server certificate, made when missing (idempotent)."""
    files = Files.of(layout)
    openssl = str(install.debian_program(layout, "openssl", "openssl", "OpenSSL"))
    files.folder.mkdir(parents=True, exist_ok=True)
    files.folder.chmod(0o700)
    if not (files.ca.is_file() and files.ca_key.is_file()):
        _run(
            openssl,
            "req", "-x509", *KEY,
            "-keyout", str(files.ca_key), "-out", str(files.ca),
            "-days", str(CA_DAYS), "-subj", "/CN=chat-backend local CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        detail(f"made a CA: {files.ca}")
    if not _current(openssl, files):
        _server_certificate(openssl, files)
        detail(f"made a server certificate for {', '.join(NAMES)}, signed by the CA")
    for path in (files.ca_key, files.key, files.bundle):
        path.chmod(0o600)
    return files


def _current(openssl: str, files: Files) -> bool:
    if not (files.cert.is_file() and files.key.is_file() and files.bundle.is_file()):
        return False
    if files.cert.stat().st_mtime < files.ca.stat().st_mtime:
        return False
    seconds = str(RENEW_BEFORE_DAYS * 86400)
    checked = subprocess.run(
        [openssl, "x509", "-in", str(files.cert), "-noout", "-checkend", seconds],
        capture_output=True,
        check=False,
    )
    return checked.returncode == 0


def _server_certificate(openssl: str, files: Files) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        request = Path(scratch) / "server.csr"
        extensions = Path(scratch) / "server.ext"
        extensions.write_text(
            f"subjectAltName={','.join(NAMES)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _run(
            openssl,
            "req", "-new", *KEY, "-keyout", str(files.key), "-out", str(request),
            "-subj", "/CN=chat-backend cluster",
        )  # fmt: skip
        _run(
            openssl,
            "x509", "-req", "-in", str(request),
            "-CA", str(files.ca), "-CAkey", str(files.ca_key), "-CAcreateserial",
            "-out", str(files.cert), "-days", str(SERVER_DAYS), "-extfile", str(extensions),
        )  # fmt: skip
    files.bundle.write_text(files.cert.read_text() + files.key.read_text())


def _run(openssl: str, *args: str) -> None:
    result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StepFailed(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr}")
