"""Each storage fault in turn, under load, then healed: nothing acknowledged is lost or
duplicated on streams, in history or in unread counts; no logged-out session works again;
every service is ready again. The figures of each run go to ``cluster-faults.jsonl`` in the
benchmark results (docs/benchmarks.md quotes them); none is asserted."""

from __future__ import annotations

import pytest

from infra.services.kafka import KafkaNode
from infra.services.redis import RedisNode
from tests.cluster.conftest import Load, Nodes, Revocation, under_fault
from tests.e2e.conftest import Clients

#: Each fault's length: the issue's 20-60 s, at the short end where that is enough to show the
#: behaviour (a CI run must stay under 40 minutes).
BROKER_DOWN = 25.0
BROKER_PAUSED = 30.0
NODE_DOWN = 30.0
NODE_PAUSED = 30.0
PRIMARY_DOWN = 20.0
QUORUM_LOST = 25.0


@pytest.mark.timeout(900)
async def test_killing_the_leader_of_the_busiest_partition(clients: Clients, nodes: Nodes) -> None:
    victim: list[KafkaNode] = []

    async def inject() -> None:
        victim.append(await nodes.busiest_leader())
        await nodes.kill(victim[0])

    async def heal() -> None:
        await nodes.start(victim[0])

    await under_fault(
        "kafka: SIGKILL the busiest partition's leader",
        Load(clients),
        BROKER_DOWN,
        inject,
        heal,
        Revocation(clients),
    )


@pytest.mark.timeout(900)
async def test_a_broker_that_stops_answering(clients: Clients, nodes: Nodes) -> None:
    victim: list[KafkaNode] = []

    async def inject() -> None:
        victim.append(await nodes.busiest_leader())
        nodes.pause(victim[0])

    async def heal() -> None:
        nodes.resume(victim[0])

    await under_fault(
        "kafka: SIGSTOP a broker (30 s)",
        Load(clients),
        BROKER_PAUSED,
        inject,
        heal,
        Revocation(clients),
    )


@pytest.mark.timeout(900)
async def test_a_cassandra_node_killed_for_half_a_minute(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.cassandra[2]

    async def inject() -> None:
        await nodes.kill(victim)

    async def heal() -> None:
        # Back in the ring; the others replay the writes they kept for it as hints.
        await nodes.start(victim)

    await under_fault(
        "cassandra: SIGKILL a node (30 s)",
        Load(clients),
        NODE_DOWN,
        inject,
        heal,
        Revocation(clients),
    )


@pytest.mark.timeout(900)
async def test_a_cassandra_node_that_stops_answering(clients: Clients, nodes: Nodes) -> None:
    victim = nodes.cassandra[3]

    async def inject() -> None:
        nodes.pause(victim)

    async def heal() -> None:
        nodes.resume(victim)

    await under_fault(
        "cassandra: SIGSTOP a node (30 s)",
        Load(clients),
        NODE_PAUSED,
        inject,
        heal,
        Revocation(clients),
    )


@pytest.mark.timeout(900)
async def test_killing_the_redis_primary(clients: Clients, nodes: Nodes) -> None:
    victim: list[RedisNode] = []

    async def inject() -> None:
        victim.append(nodes.redis_primary())
        await nodes.kill(victim[0])

    async def heal() -> None:
        # It comes back as a replica of the primary the sentinels promoted meanwhile.
        await nodes.start(victim[0])

    await under_fault(
        "redis: SIGKILL the primary",
        Load(clients),
        PRIMARY_DOWN,
        inject,
        heal,
        Revocation(clients),
    )
    assert victim[0].role() == "replica"
    assert nodes.redis_primary() is not victim[0]


@pytest.mark.timeout(900)
async def test_two_of_three_brokers_killed(clients: Clients, nodes: Nodes) -> None:
    """Below min.insync.replicas nothing can be acknowledged: sends are refused, clearly
    (503), and none acknowledged before or after is lost."""
    victims: list[KafkaNode] = []
    load = Load(clients)

    async def inject() -> None:
        leader = await nodes.busiest_leader()
        victims.extend([leader, next(b for b in nodes.kafka.values() if b is not leader)])
        await nodes.kill(*victims)

    async def heal() -> None:
        await nodes.start(*victims)  # started together: the quorum needs both

    entry = await under_fault(
        "kafka: SIGKILL two of three brokers",
        load,
        QUORUM_LOST,
        inject,
        heal,
        Revocation(clients),
    )
    assert entry.refused > 0, "the outage never reached a sender"
    # Refused means an answer: a 503 naming the problem, not a hung or dropped request.
    assert {a.status for a in load.attempts} <= {200, 201, 503}
