"""Our own services as ./dev runs them: names, modules, ops ports, addresses.

Apart from the code that starts them (``infra/apps.py``) so that infrastructure which only
needs to know where they are (Prometheus's scrape targets) can read it without an import
circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.modes import CLUSTER, Mode

PARTITIONS = 12


@dataclass(frozen=True)
class App:
    name: str
    module: list[str]
    ops_port: int
    endpoint: str
    #: Whose credentials it logs in to the cluster's Kafka, Cassandra and Redis with.
    user: str
    env: dict[str, str] = field(default_factory=dict)


APPS = [
    App(
        "config-service",
        ["config_service", "serve"],
        9501,
        "HTTP http://127.0.0.1:7301/v1/config (admin token: .infra/secrets/admin)",
        "config",
        {"CHAT_CONFIG_PORT": "7301"},
    ),
    App(
        "history-query",
        ["history", "query"],
        9301,
        "gRPC 127.0.0.1:7201",
        "history",
        {"CHAT_HISTORY_PORT": "7201"},
    ),
    App(
        "history-writer",
        ["history", "writer"],
        9302,
        "consumer group history-writers",
        "history",
        {"CHAT_WRITER_INSTANCE": "history-writer-1"},
    ),
    App(
        "notifier",
        ["notifier"],
        9601,
        "consumer group notifier; webhook: live config section notifications",
        "notifier",
    ),
    App(
        "messaging-m1",
        ["messaging"],
        9311,
        "gRPC 127.0.0.1:7101",
        "messaging",
        {"CHAT_SERVER_NAME": "m1", "CHAT_MESSAGING_PORT": "7101"},
    ),
    App(
        "messaging-m2",
        ["messaging"],
        9312,
        "gRPC 127.0.0.1:7102",
        "messaging",
        {"CHAT_SERVER_NAME": "m2", "CHAT_MESSAGING_PORT": "7102"},
    ),
    App(
        "bff",
        ["bff"],
        9401,
        "web client http://127.0.0.1:8080/ (HTTP API: OpenAPI /v1/openapi.json)",
        "bff",
        {"CHAT_BFF_PORT": "8080"},
    ),
]

#: A BFF stopping fails /readyz this long before it closes its sockets and listener: two of
#: the balancer's checks (one a second, one failure takes it out).
BFF_DRAIN_SECONDS = "2"

#: What the cluster runs besides, each after the service it doubles: a third messaging server
#: (one of three may die), a second history query process (its clients balance calls over
#: both, ``round_robin``), a second history writer and notifier (Kafka's consumer groups share
#: the partitions among the live ones), and a second BFF and config service (the balancer,
#: ``infra/services/balancer.py``, fronts both on the ports the single stack serves on).
CLUSTER_APPS = [
    App(
        "config-service-2",
        ["config_service", "serve"],
        9502,
        "HTTP 127.0.0.1:7312 (behind the balancer on :7301)",
        "config",
        {"CHAT_CONFIG_PORT": "7312"},
    ),
    App(
        "history-query-2",
        ["history", "query"],
        9303,
        "gRPC 127.0.0.1:7202",
        "history",
        {"CHAT_HISTORY_PORT": "7202"},
    ),
    App(
        "history-writer-2",
        ["history", "writer"],
        9304,
        "consumer group history-writers",
        "history",
        {"CHAT_WRITER_INSTANCE": "history-writer-2"},
    ),
    App(
        "notifier-2",
        ["notifier"],
        9602,
        "consumer group notifier",
        "notifier",
    ),
    App(
        "messaging-m3",
        ["messaging"],
        9313,
        "gRPC 127.0.0.1:7103",
        "messaging",
        {"CHAT_SERVER_NAME": "m3", "CHAT_MESSAGING_PORT": "7103"},
    ),
    App(
        "bff-2",
        ["bff"],
        9402,
        "HTTP 127.0.0.1:8082 (behind the balancer on :8080)",
        "bff",
        {"CHAT_BFF_PORT": "8082", "CHAT_BFF_DRAIN_SECONDS": BFF_DRAIN_SECONDS},
    ),
]
#: In the cluster the balancer holds the ports the single stack's BFF and config service
#: listen on; the first of each moves beside its double.
BEHIND_THE_BALANCER = {
    "config-service": App(
        "config-service",
        ["config_service", "serve"],
        9501,
        "HTTP 127.0.0.1:7311 (behind the balancer on :7301)",
        "config",
        {"CHAT_CONFIG_PORT": "7311"},
    ),
    "bff": App(
        "bff",
        ["bff"],
        9401,
        "HTTP 127.0.0.1:8081 (behind the balancer on :8080)",
        "bff",
        {"CHAT_BFF_PORT": "8081", "CHAT_BFF_DRAIN_SECONDS": BFF_DRAIN_SECONDS},
    ),
}
#: Where the cluster's services find the history query processes (a gRPC target that lists
#: both: the channel balances per call and skips one that is down).
CLUSTER_HISTORY_ADDRESS = "ipv4:127.0.0.1:7201,127.0.0.1:7202"


def apps_of(mode: Mode) -> list[App]:
    """The services of a stack, in the order they start (each double right after the service
    it doubles, the BFF last)."""
    if mode != CLUSTER:
        return list(APPS)
    found = [BEHIND_THE_BALANCER.get(app.name, app) for app in APPS]
    for extra in CLUSTER_APPS:
        last = max(i for i, app in enumerate(found) if app.module == extra.module)
        found.insert(last + 1, extra)
    return found


def messaging_servers(mode: Mode) -> list[App]:
    return [app for app in apps_of(mode) if app.module == ["messaging"]]


def behind_the_balancer(mode: Mode, module: str) -> list[App]:
    """The processes the balancer spreads HTTP over: the BFFs, or the config services."""
    return [app for app in apps_of(mode) if app.module[0] == module]


def every_app() -> list[App]:
    """Every service either stack may run (to stop whatever runs)."""
    return apps_of(CLUSTER)
