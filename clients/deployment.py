"""Where a client connects, and what it trusts there.

A deployment that serves ``https://`` (the cluster ``./dev up --cluster`` runs) speaks TLS on
every port a client reaches: the BFF's (behind the balancer) and the messaging servers' gRPC
ports. A client verifies both against the deployment's CA when it is given one, or against the
system's roots; a plaintext deployment (the single-node stack on loopback) is dialled plainly.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from clients.stream import dial
from infra import modes, tls
from infra.layout import Layout


@dataclass(frozen=True)
class Deployment:
    #: The BFF's base URL (behind the balancer, in the cluster).
    bff: str
    #: The config service's admin base URL.
    config: str = ""
    #: A PEM file: the CA the deployment's certificates are verified against; None trusts the
    #: system's roots.
    ca: Path | None = None

    @property
    def tls(self) -> bool:
        return self.bff.startswith("https://")

    @functools.cached_property
    def ca_pem(self) -> bytes | None:
        return self.ca.read_bytes() if self.ca is not None else None

    def ssl_context(self) -> ssl.SSLContext:
        cafile = str(self.ca) if self.ca is not None else None
        return ssl.create_default_context(cafile=cafile)

    def http(self, *, limit: int = 100, **options: Any) -> aiohttp.ClientSession:
        """An HTTP client of the deployment (``limit``: connections at once, 0 for no limit);
        ``https://`` URLs are verified against the CA."""
        connector = aiohttp.TCPConnector(ssl=self.ssl_context(), limit=limit)
        return aiohttp.ClientSession(connector=connector, **options)

    def dial(self, target: str) -> grpc.aio.Channel:
        """A channel to one of the deployment's messaging servers."""
        return dial(target, tls=self.tls, ca=self.ca_pem)


def local(env: Mapping[str, str] | None = None) -> Deployment:
    """The stack ``./dev`` runs on this machine, as its clients (tests, benchmarks, the
    terminal client) reach it: the cluster over TLS, trusting its CA; the single-node stack in
    plaintext. ``CHAT_BFF_URL``, ``CHAT_CONFIG_URL`` and ``CHAT_TLS_CA`` say otherwise."""
    env = os.environ if env is None else env
    layout = Layout.from_env(dict(env))
    cluster = modes.current(layout) == modes.CLUSTER
    scheme = "https" if cluster else "http"
    ca = env.get("CHAT_TLS_CA") or (str(tls.Files.of(layout).ca) if cluster else None)
    return Deployment(
        env.get("CHAT_BFF_URL") or f"{scheme}://127.0.0.1:8080",
        env.get("CHAT_CONFIG_URL") or f"{scheme}://127.0.0.1:7301",
        Path(ca) if ca else None,
    )
