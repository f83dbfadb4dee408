"""The operations side port of every service: /livez, /readyz and Prometheus /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

Check = Callable[[], Awaitable[str | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A check that takes longer counts as failed: readiness must answer fast, and a backend that
#: slow is not one to send traffic through.
CHECK_SECONDS = 3.0


READY = Gauge("chat_ready", "1 if every readiness check passed at the last look")
READY_CHECK = Gauge("chat_ready_check", "1 if this readiness check passed", ["check"])
HTTP_REQUESTS = Counter(
    "chat_http_requests_total",
    "HTTP requests answered, by route, method and status",
    ["route", "method", "status"],
)


@web.middleware
async def http_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every answer of an HTTP API by its route pattern (never the raw path: ids in
    paths would make a label value per chat). Outermost, so error answers count too."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _count(route, request.method, exc.status)
        raise
    _count(route, request.method, response.status)
    return response


_counters: dict[tuple[str, str, int], Any] = {}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _count(route: str, method: str, status: int) -> None:
    # The labelled child is looked up once per (route, method, status): labels() costs five
    # times what the increment does.
    if method not in _METHODS:
        method = "other"  # a client picks the method: never a label value per made-up one
    key = (route, method, status)
    child = _counters.get(key)
    if child is None:
        child = _counters[key] = HTTP_REQUESTS.labels(
            route=route, method=method, status=str(status)
        )
    child.inc()


#: A consumer loop that has not polled Kafka for this long is not working (they poll at least
#: every second).
STUCK_SECONDS = 15.0


def loop_check(
    task: asyncio.Task[Any],
    name: str,
    polled_at: Callable[[], float] | None = None,
    last_error: Callable[[], str | None] = lambda: None,
) -> Check:
    """A readiness check that a background loop still runs and, given ``polled_at`` (its
    last poll, monotonic), that it has polled within STUCK_SECONDS."""

    async def check() -> str | None:
        if task.done():
            return f"{name} ended: {task.exception()!r}"
        if polled_at is not None:
            quiet = time.monotonic() - polled_at()
            if quiet > STUCK_SECONDS:
                error = last_error()
                why = f" (last error: {error})" if error else ""
                return f"the {name} has not polled Kafka for {quiet:.0f} s{why}"
        return None

    return check


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

    async def run_checks() -> dict[str, str]:
        problems = {}
        for name, check in checks.items():
            try:
                problem = await asyncio.wait_for(check(), CHECK_SECONDS)
            except TimeoutError:
                problem = f"no answer within {CHECK_SECONDS:g} s"
            except Exception as exc:  # noqa: BLE001 - a failing check is a finding, not a crash
                problem = f"{type(exc).__name__}: {exc}"
            READY_CHECK.labels(check=name).set(0 if problem else 1)
            if problem is not None:
                problems[name] = problem
        READY.set(0 if problems else 1)
        return problems

    async def readyz(_: web.Request) -> web.Response:
        problems = await run_checks()
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
        # Readiness as a metric, measured at each scrape, so an alert can say "not ready".
        await run_checks()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
