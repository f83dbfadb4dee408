"""Redis from Debian's redis-server package, on loopback, with an append-only file."""

from __future__ import annotations

import shutil

import redis

from infra import install
from infra.console import detail
from infra.services.base import Context, Service

PORT = 6379


class Redis(Service):
    name = "redis"
    ports = {"client": PORT}  # noqa: RUF012
    ready_timeout = 30.0
    stop_grace = 10.0

    def install(self, ctx: Context) -> None:
        binary = install.redis_server(ctx.layout)
        detail(install.redis_version(binary))

    def prepare(self, ctx: Context) -> None:
        ctx.layout.data(self.name).mkdir(parents=True, exist_ok=True)

    def command(self, ctx: Context) -> list[str]:
        binary = shutil.which("redis-server") or "redis-server"
        return [
            binary,
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

    def probe(self) -> bool:
        client = redis.Redis(
            host="127.0.0.1", port=PORT, socket_connect_timeout=1, socket_timeout=1
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def endpoints(self) -> list[str]:
        return [f"redis://127.0.0.1:{PORT}"]
