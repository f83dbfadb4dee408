from pathlib import Path

import pytest
import yaml

from infra import cluster
from infra.errors import InfraError
from infra.layout import PROJECT_ROOT, Layout
from infra.services.base import Context
from infra.services.cassandra import Cassandra, CassandraNode
from infra.services.kafka import KafkaNode
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


def _layout(tmp_path: Path) -> Layout:
    return Layout(project=PROJECT_ROOT, state=tmp_path / "state", cache=tmp_path / "cache")


def test_cassandra_yaml_renders_to_valid_yaml_with_absolute_dirs(tmp_path: Path) -> None:
    ctx = Context(_layout(tmp_path))
    Cassandra().prepare(ctx)
    config = yaml.safe_load((ctx.layout.home("cassandra") / "cassandra.yaml").read_text())
    assert config["native_transport_port"] == 9042
    assert config["rpc_address"] == "127.0.0.1"
    dirs = [*config["data_file_directories"], config["commitlog_directory"]]
    assert all(Path(d).is_absolute() and Path(d).is_relative_to(tmp_path) for d in dirs)
    # initial_token is only valid with a single token.
    assert config["num_tokens"] == 1
    assert config["authenticator"] == "AllowAllAuthenticator"


def test_each_cluster_node_has_its_own_address_token_and_logins(tmp_path: Path) -> None:
    ctx = Context(_layout(tmp_path))
    configs = []
    for node in cluster.NODES:
        service = CassandraNode(node, ctx.layout)
        service.prepare(ctx)
        configs.append(
            yaml.safe_load((ctx.layout.home(service.name) / "cassandra.yaml").read_text())
        )
    assert [c["listen_address"] for c in configs] == list(cluster.CASSANDRA_ADDRESSES.values())
    assert len({c["initial_token"] for c in configs}) == 3
    assert len({c["data_file_directories"][0] for c in configs}) == 3
    assert all(c["authenticator"] == "PasswordAuthenticator" for c in configs)
    assert all(c["hinted_handoff_enabled"] is True for c in configs)
    seeds = {c["seed_provider"][0]["parameters"][0]["seeds"] for c in configs}
    assert seeds == {f"{cluster.CASSANDRA_ADDRESSES[1]}:7000"}


def test_cluster_brokers_require_scram_and_keep_three_copies(tmp_path: Path) -> None:
    ctx = Context(_layout(tmp_path))
    broker = KafkaNode(2, ctx.layout)
    data = ctx.layout.data(broker.name)
    props = dict(
        line.split("=", 1)
        for line in broker._render(ctx, data).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert props["node.id"] == "2"
    assert props["listeners"].startswith("SASL_PLAINTEXT://127.0.0.1:19093,")
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert len(props["controller.quorum.voters"].split(",")) == 3
    # The secrets are files only their owner reads.
    secret = cluster.Secrets.of(ctx.layout).file("kafka-broker")
    assert secret.stat().st_mode & 0o077 == 0


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
