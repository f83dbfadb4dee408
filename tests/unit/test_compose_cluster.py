"""compose.cluster.yaml cannot run here (no Docker engine). Check that it is the cluster
./dev up --cluster runs: the same settings rendered by the same code, each service told the
same things, every file and volume it names present."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import catalog, cluster, compose_cluster, modes
from infra.layout import PROJECT_ROOT
from infra.services import kafka, redis
from infra.templates import render

NODE_KINDS = ("kafka", "cassandra", "redis", "sentinel")


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML with Compose's merge tags (``!override``, ``!reset``) read as plain values."""


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!override", _plain)
_ComposeLoader.add_constructor("!reset", _plain)


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.load((PROJECT_ROOT / name).read_text(), Loader=_ComposeLoader)  # noqa: S506
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return _load("compose.yaml")


@pytest.fixture(scope="module")
def overlay() -> dict[str, Any]:
    return _load("compose.cluster.yaml")


@pytest.fixture(scope="module")
def merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services as Compose merges the two files (environment maps key by key; the rest
    of a service's keys replaced) and leaves out those of a profile not asked for."""
    services: dict[str, dict[str, Any]] = {}
    for name in {*base["services"], *overlay["services"]}:
        service = dict(base["services"].get(name, {}))
        added = dict(overlay["services"].get(name, {}))
        extends = added.pop("extends", None)
        if extends is not None:  # a service the overlay adds, built on one of compose.yaml's
            assert extends["file"] == "compose.yaml", extends
            service = dict(base["services"][extends["service"]])
        for key, value in added.items():
            if key == "environment" and isinstance(service.get(key), dict):
                service[key] = {**service[key], **value}
            else:
                service[key] = value
        if not service.get("profiles"):
            services[name] = service
    return services


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cluster")
    compose_cluster.render(root)
    return root


def test_the_single_node_stores_give_way_to_three_of_each(
    merged: dict[str, dict[str, Any]],
) -> None:
    assert not {"kafka", "cassandra", "redis"} & set(merged)
    for kind in NODE_KINDS:
        assert {f"{kind}-{n}" for n in cluster.NODES} <= set(merged), kind


def test_nodes_run_the_images_the_single_node_stack_pins(
    base: dict[str, Any], merged: dict[str, dict[str, Any]]
) -> None:
    single = {kind: base["services"][kind]["image"] for kind in ("kafka", "cassandra", "redis")}
    for kind in NODE_KINDS:
        for node in cluster.NODES:
            assert merged[f"{kind}-{node}"]["image"] == single[kind.replace("sentinel", "redis")]


def test_each_service_is_told_what_dev_tells_it(merged: dict[str, dict[str, Any]]) -> None:
    for app in catalog.apps_of(modes.CLUSTER):
        want = cluster.service_environment(
            cluster.COMPOSE, compose_cluster.app_secrets(Path("/cluster")), app.user
        )
        env = merged[app.name]["environment"]
        assert {key: env.get(key) for key in want} == want, app.name
        assert "cluster-apps:/cluster/apps:ro" in merged[app.name]["volumes"], app.name
    admin = cluster.service_environment(
        cluster.COMPOSE, compose_cluster.all_secrets(Path("/cluster")), cluster.ADMIN
    )
    env = merged["setup"]["environment"]
    assert {key: env.get(key) for key in admin} == admin


def test_a_service_logs_in_with_no_one_elses_rights(merged: dict[str, dict[str, Any]]) -> None:
    for app in catalog.apps_of(modes.CLUSTER):
        env = merged[app.name]["environment"]
        users = {env[key] for key in env if key.endswith("_USER")}
        assert users == {app.user}, app.name
        # Only the operator's one-shot services see every secret.
        assert not any("cluster-secrets" in v for v in merged[app.name]["volumes"]), app.name


def test_setup_runs_what_dev_runs_in_order(merged: dict[str, dict[str, Any]]) -> None:
    script = " ".join(merged["setup"]["command"])
    steps = re.findall(r"python -m ([\w.]+ \w+)", script)
    assert steps == [
        "infra.compose_cluster roles",
        "history migrate",
        "messaging migrate",
        "messaging setup",
        "config_service seed",
        "infra.compose_cluster grants",
    ]
    waits = merged["setup"]["depends_on"]
    assert not {"kafka", "cassandra", "redis"} & set(waits)
    assert all(w["condition"] == "service_healthy" for w in waits.values())


def test_every_file_a_node_is_given_is_rendered(
    merged: dict[str, dict[str, Any]], rendered: Path
) -> None:
    named: set[str] = set()
    for name, service in merged.items():
        text = yaml.safe_dump(
            {k: service.get(k) for k in ("command", "environment", "healthcheck")}
        )
        for path in re.findall(r"/cluster/(?:kafka|cassandra|redis|balancer)/[\w./-]+", text):
            named.add(path)
            assert (rendered / path.removeprefix("/cluster/")).is_file(), (name, path)
    assert len(named) >= 3 * len(NODE_KINDS)


def test_volumes_are_declared(
    base: dict[str, Any], overlay: dict[str, Any], merged: dict[str, dict[str, Any]]
) -> None:
    declared = {*base["volumes"], *overlay["volumes"]}
    for name, service in merged.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in declared, (name, source)
        for target in service.get("depends_on", {}):
            assert target in merged, (name, target)
    assert set(compose_cluster.OWNERS) == {
        v.removeprefix("cluster-") for v in overlay["volumes"] if v.startswith("cluster-")
    }


def _properties(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


#: What may differ between a broker of ./dev and one of compose: where it is.
WHERE = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}


def test_brokers_differ_from_devs_in_their_addresses_only(rendered: Path) -> None:
    keys = compose_cluster.all_secrets(rendered)
    template = (PROJECT_ROOT / "infra" / "kafka" / "cluster.properties").read_text()
    for node in cluster.NODES:
        mine = _properties((rendered / f"kafka/kafka-{node}/server.properties").read_text())
        devs = _properties(
            render(template, kafka.broker_values(cluster.LOOPBACK, node, keys, "/data"))
        )
        assert set(mine) == set(devs)
        assert {k for k in mine if mine[k] != devs[k]} <= WHERE
        assert mine["advertised.listeners"] == f"SASL_PLAINTEXT://kafka-{node}:9092"
        start = (rendered / f"kafka/kafka-{node}/start.sh").read_text()
        assert "--ignore-formatted" in start
        for user in (cluster.KAFKA_BROKER_USER, *cluster.KAFKA_USERS):
            assert f"name={user}," in start


def test_redis_nodes_and_sentinels_differ_from_devs_in_their_addresses_only(
    rendered: Path,
) -> None:
    keys = compose_cluster.all_secrets(rendered)

    def directives(text: str) -> dict[str, str]:
        found = {}
        for line in text.splitlines():
            words = line.split(" ", 2)
            # "sentinel monitor chat ..." is keyed by its first two words.
            key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
            found[key] = line
        return found

    where = {"bind", "port", "dir", "aclfile", "replica-announce-ip", "replicaof"}
    for node in cluster.NODES:
        mine = directives((rendered / f"redis/redis-{node}/redis.conf").read_text())
        primary = None if node == 1 else cluster.LOOPBACK.redis[1]
        devs = directives(redis.node_config(cluster.LOOPBACK, node, keys, "/d", "/a", primary))
        assert set(mine) == set(devs)
        assert {k for k in mine if mine[k] != devs[k]} <= where
        sentinel_where = {"bind", "port", "dir", "sentinel monitor"}
        sentinel_where |= {"sentinel announce-ip", "sentinel announce-port"}
        mine = directives((rendered / f"redis/sentinel-{node}/sentinel.conf").read_text())
        devs = directives(redis.sentinel_config(cluster.LOOPBACK, node, keys, "/h"))
        assert set(mine) == set(devs)
        assert {k for k in mine if mine[k] != devs[k]} <= sentinel_where


def test_cassandra_nodes_are_reached_by_name(rendered: Path) -> None:
    for node in cluster.NODES:
        config = yaml.safe_load(
            (rendered / f"cassandra/cassandra-{node}/cassandra.yaml").read_text()
        )
        assert config["listen_address"] == f"cassandra-{node}"
        assert config["authenticator"] == "PasswordAuthenticator"
        assert config["seed_provider"][0]["parameters"][0]["seeds"] == "cassandra-1:7000"
        assert config["data_file_directories"] == ["/var/lib/cassandra/data"]


def test_a_second_render_keeps_secrets_and_what_a_failover_rewrote(tmp_path: Path) -> None:
    compose_cluster.render(tmp_path)
    secret = tmp_path / "secrets" / "kafka-admin"
    before = secret.read_text()
    config = tmp_path / "redis" / "redis-1" / "redis.conf"
    config.write_text(config.read_text() + "replicaof redis-2 6379\n")
    compose_cluster.render(tmp_path)
    assert secret.read_text() == before
    assert config.read_text().endswith("replicaof redis-2 6379\n")
    # Each service finds its own logins in the volume it mounts, and nobody else reads them.
    for app in catalog.apps_of(modes.CLUSTER):
        for name in cluster.service_secrets(app.user):
            copy = tmp_path / compose_cluster.APP_SECRETS / name
            assert copy.read_text() == (tmp_path / "secrets" / name).read_text()
            assert copy.stat().st_mode & 0o077 == 0


def test_nodes_run_with_the_jvm_settings_dev_gives_them(merged: dict[str, dict[str, Any]]) -> None:
    from infra.services.cassandra import NODE_FLAGS, CassandraNode
    from infra.services.kafka import KafkaNode

    for node in cluster.NODES:
        env = merged[f"cassandra-{node}"]["environment"]
        flags = env["JVM_EXTRA_OPTS"].split()
        assert set(NODE_FLAGS) <= set(flags)
        assert (
            f"-Dcassandra.config=file:///cluster/cassandra/cassandra-{node}/cassandra.yaml" in flags
        )
        assert env["MAX_HEAP_SIZE"] == CassandraNode.default_heap
        heap = merged[f"kafka-{node}"]["environment"]["KAFKA_HEAP_OPTS"].split()
        assert heap == [f"-Xms{KafkaNode.default_heap}", f"-Xmx{KafkaNode.default_heap}"]


def test_the_messaging_servers_are_placed_as_dev_places_them(
    merged: dict[str, dict[str, Any]],
) -> None:
    from chatlib.partitioning import Partitioning
    from infra.apps import default_partitioning

    seeded = Partitioning.parse(
        json.loads(merged["setup"]["environment"]["CHAT_PARTITIONING_DEFAULT"])
    )
    dev = Partitioning.parse(json.loads(default_partitioning(modes.CLUSTER)))
    assert [(s.name, s.ranges) for s in seeded.servers] == [(s.name, s.ranges) for s in dev.servers]
    dial = merged["bff"]["environment"]["CHAT_MESSAGING_DIAL"]
    for server in seeded.servers:
        port = server.target.rsplit(":", 1)[1]
        assert f"127.0.0.1:{port}:{port}" in merged[f"messaging-{server.name}"]["ports"]
        assert f"{server.name}=messaging-{server.name}:{port}" in dial


def test_the_balancer_fronts_every_bff_and_config_service(
    merged: dict[str, dict[str, Any]], rendered: Path
) -> None:
    config = (rendered / "balancer" / "haproxy.cfg").read_text()
    servers = dict(re.findall(r"^\s+server (\S+) (\S+) check port \d+$", config, re.MULTILINE))
    for module, port in (("bff", "CHAT_BFF_PORT"), ("config_service", "CHAT_CONFIG_PORT")):
        for app in catalog.behind_the_balancer(modes.CLUSTER, module):
            listens = merged[app.name]["environment"][port]
            assert servers.pop(app.name) == f"{app.name}:{listens}"
    assert servers == {}
    # Only the balancer publishes the ports browsers and operators use.
    published = {name: s.get("ports", []) for name, s in merged.items()}
    for port in ("8080", "7301"):
        holders = [
            name for name, ports in published.items() if any(f":{port}:" in p for p in ports)
        ]
        assert holders == ["balancer"], port
