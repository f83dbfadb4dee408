"""The infrastructure services, in start order."""

from __future__ import annotations

from infra.services.base import Context, Service
from infra.services.cassandra import Cassandra
from infra.services.jaeger import Jaeger
from infra.services.kafka import Kafka
from infra.services.prometheus import Prometheus
from infra.services.redis import Redis

__all__ = ["Context", "Service", "all_services"]


def all_services() -> list[Service]:
    """Start order: the quick ones first, so a broken machine fails fast."""
    return [Redis(), Kafka(), Cassandra(), Jaeger(), Prometheus()]
