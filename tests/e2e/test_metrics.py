"""What an operator alerts on: Prometheus (started by ./dev up) scrapes every service, its
alert rules pass promtool, and the metrics the rules and dashboards need are exported."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import aiohttp

from infra.catalog import APPS
from infra.layout import Layout
from tests.e2e.conftest import Clients, eventually

PROMETHEUS = "http://127.0.0.1:9090"


def test_promtool_accepts_the_rules_and_the_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "./dev up installs Debian's prometheus package with promtool"
    home = Layout.from_env().home("prometheus")
    rules = subprocess.run(
        [promtool, "check", "rules", str(Layout.from_env().sources / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 6 rules found" in rules.stdout, rules.stdout
    config = subprocess.run(
        [promtool, "check", "config", str(home / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


async def _query(http: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_prometheus_scrapes_every_service_and_sees_what_the_alerts_need(
    clients: Clients,
) -> None:
    alice, _, chat = await clients.pair()
    await alice.send(chat, "counted")
    async with aiohttp.ClientSession() as http:

        async def all_up() -> bool:
            async with http.get(f"{PROMETHEUS}/api/v1/targets") as response:
                targets = (await response.json())["data"]["activeTargets"]
            health = {t["labels"]["service"]: t["health"] for t in targets}
            return health == dict.fromkeys((app.name for app in APPS), "up")

        await eventually(all_up, seconds=30)

        async def exported(expr: str) -> bool:
            return bool(await _query(http, expr))

        for expr in (
            'chat_ready{service="messaging-m1"} == 1',
            'chat_consumer_lag{group="history-writers"}',
            'chat_consumer_lag{group="messaging-fanout"}',
            'chat_http_requests_total{service="bff",route="/v1/chats/{chat_id}/messages"}',
            'chat_grpc_requests_total{method="Send",code="OK"}',
            "messaging_live_streams",
            "messaging_sends_rate_limited_total",
            "bff_auth_attempts_refused_total",
            "chat_revocations_subscribed == 1",
            "history_dead_letters_total",
            'chat_consumer_lag{group="notifier"}',
            'chat_ready{service="notifier"} == 1',
            "messaging_signals_subscribed == 1",
        ):
            await eventually(lambda expr=expr: exported(expr), seconds=30)
