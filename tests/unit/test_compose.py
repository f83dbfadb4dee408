"""compose.yaml cannot run here (no Docker engine); check that it parses and hangs together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatlib.partitioning import Partitioning
from infra.layout import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "compose.yaml"
INFRASTRUCTURE = {
    "kafka",
    "cassandra",
    "redis",
    "jaeger",
    "elasticsearch",
    "kibana",
    "fluent-bit",
    "prometheus",
    "seaweedfs",
}
APPS = {
    "setup",
    "config-service",
    "history-query",
    "history-writer",
    "notifier",
    "messaging-m1",
    "messaging-m2",
    "bff",
}
LOCAL_IMAGE = "chat-backend:dev"
PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def test_the_whole_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == INFRASTRUCTURE | APPS


def test_every_app_runs_the_one_image_and_an_existing_module(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["setup"]["build"] == "."
    assert (PROJECT_ROOT / "Dockerfile").is_file()
    for name in APPS:
        assert services[name]["image"] == LOCAL_IMAGE, name
        command = " ".join(services[name]["command"])
        for module in re.findall(r"python -m (\w+)", command):
            assert (PROJECT_ROOT / module / "__main__.py").is_file(), (name, module)
        if name != "setup":
            assert services[name]["depends_on"]["setup"]["condition"] == (
                "service_completed_successfully"
            )


def test_the_messaging_addresses_clients_get_are_published(
    services: dict[str, dict[str, Any]],
) -> None:
    config = Partitioning.parse(
        json.loads(services["setup"]["environment"]["CHAT_PARTITIONING_DEFAULT"])
    )
    published = {port for s in services.values() for port in s.get("ports", [])}
    for server in config.servers:
        port = server.target.rsplit(":", 1)[1]
        assert f"127.0.0.1:{port}:{port}" in published, server


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    images = {
        name: str(s["image"])
        for name, s in services.items()
        if "image" in s and s["image"] != LOCAL_IMAGE
    }
    unpinned = {name: image for name, image in images.items() if not PINNED.match(image)}
    assert unpinned == {}


def test_versions_match_what_dev_runs(services: dict[str, dict[str, Any]]) -> None:
    kafka_pom = (PROJECT_ROOT / "infra" / "kafka" / "pom.xml").read_text()
    cassandra_pom = (PROJECT_ROOT / "infra" / "cassandra" / "pom.xml").read_text()
    kafka_version = services["kafka"]["image"].rsplit(":", 1)[1]
    cassandra_version = services["cassandra"]["image"].rsplit(":", 1)[1]
    assert f"<kafka.version>{kafka_version}</kafka.version>" in kafka_pom
    assert f"<version>{cassandra_version}</version>" in cassandra_pom


def test_kibana_matches_elasticsearch(services: dict[str, dict[str, Any]]) -> None:
    es = services["elasticsearch"]["image"].rsplit(":", 1)[1]
    kibana = services["kibana"]["image"].rsplit(":", 1)[1]
    assert es == kibana


def test_dependencies_exist_and_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        targets = depends if isinstance(depends, list) else list(depends)
        for target in targets:
            assert target in services, f"{name} depends on unknown service {target}"
            condition = depends[target].get("condition") if isinstance(depends, dict) else None
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_stateful_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "cassandra", "redis", "elasticsearch", "kibana"):
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"


def test_named_volumes_are_declared_and_bind_mounts_exist(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
    for name in ("kafka", "cassandra", "redis", "elasticsearch"):
        assert services[name].get("volumes"), f"{name} keeps its data in no volume"


def test_host_ports_match_dev_up(services: dict[str, dict[str, Any]]) -> None:
    published = {
        int(port.rsplit(":", 2)[-2]) for s in services.values() for port in s.get("ports", [])
    }
    assert published >= {9092, 9042, 6379, 4317, 16686}


def test_fluent_bit_config_receives_forward_and_writes_elasticsearch() -> None:
    config = Path(PROJECT_ROOT / "infra" / "compose" / "fluent-bit.conf").read_text()
    assert re.search(r"Name\s+forward", config)
    assert re.search(r"Port\s+24224", config)
    assert re.search(r"Name\s+es\b", config)
    assert re.search(r"Host\s+elasticsearch", config)


def test_services_run_grpc_as_dev_runs_them(services: dict[str, dict[str, Any]]) -> None:
    from infra.apps import GRPC_EXPERIMENTS

    assert services["setup"]["environment"]["GRPC_EXPERIMENTS"] == GRPC_EXPERIMENTS


def test_compose_prometheus_scrapes_every_app_on_its_ops_port() -> None:
    from infra import catalog

    config = yaml.safe_load((PROJECT_ROOT / "infra" / "compose" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    scraped = {entry["labels"]["service"]: entry["targets"][0] for entry in job["static_configs"]}
    assert scraped == {app.name: f"{app.name}:{app.ops_port}" for app in catalog.APPS}
