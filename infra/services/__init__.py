"""The infrastructure services, in start order: the single-node stack's, and the cluster's."""

from __future__ import annotations

from infra.cluster import NODES
from infra.layout import Layout
from infra.modes import CLUSTER, Mode
from infra.services.balancer import Balancer
from infra.services.base import Context, Service
from infra.services.cassandra import Cassandra, CassandraNode
from infra.services.jaeger import Jaeger
from infra.services.kafka import Kafka, KafkaNode
from infra.services.prometheus import Prometheus
from infra.services.redis import Redis, RedisNode, SentinelNode
from infra.services.seaweedfs import SeaweedFS, SeaweedFSNode

__all__ = [
    "Context",
    "Service",
    "all_services",
    "cluster_services",
    "services_of",
    "single_services",
]


def single_services() -> list[Service]:
    """The single-node stack. Start order: the quick ones first, so a broken machine fails
    fast."""
    return [Redis(), Kafka(), Cassandra(), Jaeger(), Prometheus(), SeaweedFS()]


def cluster_services(layout: Layout) -> list[Service]:
    """The cluster: the sentinels, then the Redis nodes (each asks them which node is the
    primary, so one that was demoted while stopped comes back as a replica), the three brokers
    (started together: a quorum forms only once two run), the three Cassandra nodes (one after
    the other: a node joins a ring that is settled), then Jaeger and Prometheus as in the
    single stack, the object store's three nodes, and the balancer before the BFFs and config
    services (and the object store's gateways)."""
    return [
        *(SentinelNode(n, layout) for n in NODES),
        *(RedisNode(n, layout) for n in NODES),
        *(KafkaNode(n, layout) for n in NODES),
        *(CassandraNode(n, layout) for n in NODES),
        Jaeger(),
        Prometheus(),
        # The object store's three nodes start together (their masters elect a leader).
        *(SeaweedFSNode(n) for n in NODES),
        Balancer(),
    ]


def all_services(layout: Layout) -> list[Service]:
    """Every service either stack has, each once (for down, status, reset)."""
    found: dict[str, Service] = {s.name: s for s in single_services()}
    for service in cluster_services(layout):
        found.setdefault(service.name, service)
    return list(found.values())


def services_of(mode: Mode, layout: Layout) -> list[Service]:
    """The infrastructure of one stack, in start order."""
    return cluster_services(layout) if mode == CLUSTER else single_services()
