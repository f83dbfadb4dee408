from pathlib import Path

import pytest
import yaml

from infra.errors import InfraError
from infra.layout import PROJECT_ROOT
from infra.templates import render, render_file

INFRA = PROJECT_ROOT / "infra"


def test_render_fills_every_placeholder() -> None:
    assert render("a={{x}} b={{y}} c={{x}}", {"x": 1, "y": "two"}) == "a=1 b=two c=1"


def test_render_rejects_a_placeholder_without_a_value() -> None:
    with pytest.raises(InfraError, match=r"\{\{port\}\}"):
        render("listen={{port}}", {"host": "h"})


def test_kafka_server_properties_render_to_loopback_listeners(tmp_path: Path) -> None:
    values = {"port": 9092, "controller_port": 9093, "data_dir": tmp_path / "data"}
    text = render_file(INFRA / "kafka" / "server.properties", tmp_path / "s.p", values).read_text()
    props = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["log.dirs"] == str(tmp_path / "data")
    # Static voters and a bootstrap list together make StorageTool refuse to format.
    assert "controller.quorum.bootstrap.servers" not in props


def test_cassandra_yaml_renders_to_valid_yaml_with_absolute_dirs(tmp_path: Path) -> None:
    values = {"port": 9042, "storage_port": 7000, "data_dir": tmp_path}
    text = render_file(INFRA / "cassandra" / "cassandra.yaml", tmp_path / "c.yaml", values)
    config = yaml.safe_load(text.read_text())
    assert config["native_transport_port"] == 9042
    assert config["rpc_address"] == "127.0.0.1"
    dirs = [*config["data_file_directories"], config["commitlog_directory"]]
    assert all(Path(d).is_absolute() and Path(d).is_relative_to(tmp_path) for d in dirs)
    # initial_token=0 (set on the command line) is only valid with a single token.
    assert config["num_tokens"] == 1


def test_jaeger_config_binds_every_listener_to_loopback(tmp_path: Path) -> None:
    values = {
        "otlp_grpc_port": 4317,
        "otlp_http_port": 4318,
        "query_port": 16686,
        "query_grpc_port": 16685,
        "health_port": 13133,
    }
    text = render_file(INFRA / "jaeger" / "config.yaml", tmp_path / "j.yaml", values).read_text()
    config = yaml.safe_load(text)
    endpoints = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["extensions"]["jaeger_query"]["http"]["endpoint"],
        config["extensions"]["jaeger_query"]["grpc"]["endpoint"],
        config["extensions"]["healthcheckv2"]["http"]["endpoint"],
    ]
    assert endpoints == [
        "127.0.0.1:4317",
        "127.0.0.1:4318",
        "127.0.0.1:16686",
        "127.0.0.1:16685",
        "127.0.0.1:13133",
    ]
