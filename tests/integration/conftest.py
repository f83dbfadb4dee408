"""Where the real services are. Defaults match ./dev up; override to test another cluster."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

#: How test keyspaces are created (one node here).
REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    cassandra_hosts: list[str]
    cassandra_port: int
    redis_url: str
    otlp_grpc: str
    jaeger_query: str


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    env = os.environ
    return Endpoints(
        kafka_bootstrap=env.get("CHAT_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        cassandra_hosts=env.get("CHAT_CASSANDRA_HOSTS", "127.0.0.1").split(","),
        cassandra_port=int(env.get("CHAT_CASSANDRA_PORT", "9042")),
        redis_url=env.get("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0"),
        otlp_grpc=env.get("CHAT_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        jaeger_query=env.get("CHAT_JAEGER_QUERY_URL", "http://127.0.0.1:16686"),
    )


@pytest.fixture
def unique() -> str:
    """A name no other test (or earlier run) uses: tests never share topics or keyspaces."""
    return f"it_{uuid.uuid4().hex[:12]}"
