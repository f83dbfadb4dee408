"""Jaeger v2 (OTLP in, in-memory storage, query API out), built from the Go module proxy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from infra import install
from infra.console import detail
from infra.services.base import Context, Service
from infra.templates import render_file

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
QUERY_PORT = 16686
QUERY_GRPC_PORT = 16685
HEALTH_PORT = 13133


class Jaeger(Service):
    name = "jaeger"
    ports = {  # noqa: RUF012
        "OTLP gRPC": OTLP_GRPC_PORT,
        "OTLP HTTP": OTLP_HTTP_PORT,
        "query HTTP": QUERY_PORT,
        "query gRPC": QUERY_GRPC_PORT,
        "health": HEALTH_PORT,
    }
    ready_timeout = 60.0
    stop_grace = 10.0

    def install(self, ctx: Context) -> None:
        binary = install.jaeger_binary(ctx.layout)
        module = f"{install.JAEGER_MODULE}@{install.JAEGER_VERSION}"
        detail(f"{binary} = Jaeger {install.JAEGER_RELEASE} ({module})")

    def prepare(self, ctx: Context) -> None:
        render_file(
            ctx.layout.sources / "jaeger" / "config.yaml",
            ctx.layout.home(self.name) / "config.yaml",
            {
                "otlp_grpc_port": OTLP_GRPC_PORT,
                "otlp_http_port": OTLP_HTTP_PORT,
                "query_port": QUERY_PORT,
                "query_grpc_port": QUERY_GRPC_PORT,
                "health_port": HEALTH_PORT,
            },
        )

    def command(self, ctx: Context) -> list[str]:
        config = ctx.layout.home(self.name) / "config.yaml"
        return [str(ctx.layout.bin / "jaeger"), "--config", f"file:{config}"]

    def probe(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{QUERY_PORT}/api/services", timeout=2
            ) as response:
                body = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return isinstance(body, dict) and "data" in body

    def endpoints(self) -> list[str]:
        return [
            f"OTLP gRPC 127.0.0.1:{OTLP_GRPC_PORT}",
            f"OTLP HTTP http://127.0.0.1:{OTLP_HTTP_PORT}",
            f"query API http://127.0.0.1:{QUERY_PORT}/api/services",
        ]
