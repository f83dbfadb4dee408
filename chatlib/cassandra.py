"""cassandra-driver bridged to asyncio: prepared statements, futures resolved on the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    ResponseFuture,
    Session,
)
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement


def connect(hosts: Sequence[str], port: int) -> tuple[Cluster, Session]:
    """A session without a current keyspace: statements name theirs (see AsyncSession)."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
        # Quorum of the replicas: on one node that is the node; on three it survives one loss.
        consistency_level=ConsistencyLevel.LOCAL_QUORUM,
    )
    cluster = Cluster(
        list(hosts),
        port=port,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    return cluster, cluster.connect()


class AsyncSession:
    """``await execute(...)`` for a driver session; statements are prepared once and cached.

    Statements are prepared for ``keyspace`` (protocol v5 carries it per statement) rather
    than through ``USE``, which Cassandra warns is ambiguous with prepared statements.
    """

    def __init__(self, session: Session, keyspace: str | None = None) -> None:
        self.session = session
        self.keyspace = keyspace
        self._prepared: dict[str, PreparedStatement] = {}

    def prepare(self, cql: str) -> PreparedStatement:
        statement = self._prepared.get(cql)
        if statement is None:
            statement = self.session.prepare(cql, keyspace=self.keyspace)
            self._prepared[cql] = statement
        return statement

    async def execute(self, cql: str, params: Sequence[Any] = ()) -> list[Any]:
        statement = self.prepare(cql)
        return await self.run(self.session.execute_async(statement, list(params)))

    @staticmethod
    async def run(response: ResponseFuture) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()

        def ok(rows: Any) -> None:
            loop.call_soon_threadsafe(_settle, future, list(rows or []), None)

        def failed(error: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, None, error)

        response.add_callbacks(ok, failed)
        return await future


def _settle(
    future: asyncio.Future[list[Any]], rows: list[Any] | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(rows or [])
