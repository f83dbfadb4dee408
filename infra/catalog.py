"""Our own services as ./dev runs them: names, modules, ops ports, addresses.

Apart from the code that starts them (``infra/apps.py``) so that infrastructure which only
needs to know where they are (Prometheus's scrape targets) can read it without an import
circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
        f"gRPC 127.0.0.1:7101 (seeded with partitions 0-{PARTITIONS // 2 - 1})",
        "messaging",
        {"CHAT_SERVER_NAME": "m1", "CHAT_MESSAGING_PORT": "7101"},
    ),
    App(
        "messaging-m2",
        ["messaging"],
        9312,
        f"gRPC 127.0.0.1:7102 (seeded with partitions {PARTITIONS // 2}-{PARTITIONS - 1})",
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
