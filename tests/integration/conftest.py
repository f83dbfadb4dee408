"""Where the real services are. Defaults match ./dev up; override to test another cluster."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

from chatlib.settings import CassandraAccess, Common, Env, KafkaAccess, RedisAccess

#: How test keyspaces are created (one node here).
REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


@dataclass(frozen=True)
class Endpoints:
    """How to reach each real service: what the services themselves read (``CHAT_*``)."""

    kafka: KafkaAccess
    cassandra: CassandraAccess
    redis: RedisAccess
    otlp_grpc: str
    jaeger_query: str

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    env = os.environ
    # The token secret is not needed to reach the infrastructure.
    common = Common(Env({"CHAT_JWT_SECRET": "-", **env}))
    return Endpoints(
        kafka=common.kafka,
        cassandra=common.cassandra,
        redis=common.redis,
        otlp_grpc=env.get("CHAT_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
        jaeger_query=env.get("CHAT_JAEGER_QUERY_URL", "http://127.0.0.1:16686"),
    )


@pytest.fixture
def unique() -> str:
    """A name no other test (or earlier run) uses: tests never share topics or keyspaces."""
    return f"it_{uuid.uuid4().hex[:12]}"
