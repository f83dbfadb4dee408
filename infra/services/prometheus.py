"""Prometheus from Debian's package, scraping every service's ops port, with the alert rules
of infra/prometheus/alerts.yml."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request

import yaml

from infra import catalog, install, modes
from infra.console import detail
from infra.services.base import Context, Service

PORT = 9090
SCRAPE_SECONDS = 5


def scrape_config(targets: dict[str, str], rules: str) -> dict[str, object]:
    """A config scraping ``targets`` (service name -> host:port of its ops listener)."""
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "15s"},
        "rule_files": [rules],
        "scrape_configs": [
            {
                "job_name": "chat",
                "static_configs": [
                    {"targets": [address], "labels": {"service": name}}
                    for name, address in targets.items()
                ],
            }
        ],
    }


class Prometheus(Service):
    name = "prometheus"
    ports = {"HTTP": PORT}  # noqa: RUF012
    ready_timeout = 30.0
    stop_grace = 10.0

    def install(self, ctx: Context) -> None:
        binary = install.prometheus(ctx.layout)
        detail(str(binary))

    def prepare(self, ctx: Context) -> None:
        home = ctx.layout.home(self.name)
        home.mkdir(parents=True, exist_ok=True)
        rules = home / "alerts.yml"
        shutil.copyfile(ctx.layout.sources / "prometheus" / "alerts.yml", rules)
        # The stack's own services (a third messaging server in the cluster): ./dev up
        # restarts Prometheus when the stack changes.
        services = catalog.apps_of(modes.current(ctx.layout))
        targets = {app.name: f"127.0.0.1:{app.ops_port}" for app in services}
        (home / "prometheus.yml").write_text(
            yaml.safe_dump(scrape_config(targets, str(rules)), sort_keys=False)
        )

    def command(self, ctx: Context) -> list[str]:
        home = ctx.layout.home(self.name)
        return [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={ctx.layout.data(self.name)}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{PORT}",
        ]

    def probe(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def endpoints(self) -> list[str]:
        return [f"HTTP http://127.0.0.1:{PORT} (alerts: /alerts, targets: /targets)"]
