"""The operations side port of every service: /livez, /readyz and Prometheus /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], Awaitable[str | None]]


def redis_ping(client: aioredis.Redis) -> Check:
    """A readiness check that Redis answers."""

    async def check() -> str | None:
        await client.ping()
        return None

    return check


async def start(
    host: str,
    port: int,
    checks: dict[str, Check],
    degraded: dict[str, Callable[[], str | None]] | None = None,
) -> web.AppRunner:
    """Serve the ops endpoints. Each check returns None when healthy, else what is wrong.

    ``degraded`` reports what is stale but still serving (the live config while Redis is
    away): listed in /readyz without making it fail, since taking the process out of
    service would be worse than serving with the last good values.
    """

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = {}
        for name, check in checks.items():
            try:
                problem = await check()
            except Exception as exc:  # noqa: BLE001 - a failing check is a finding, not a crash
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                problems[name] = problem
        notes = {}
        for name, note in (degraded or {}).items():
            found = note()
            if found is not None:
                notes[name] = found
        status = 200 if not problems else 503
        return web.json_response(
            {"ready": not problems, "problems": problems, "degraded": notes}, status=status
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
