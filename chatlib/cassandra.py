"""cassandra-driver bridged to asyncio: prepared statements, futures resolved on the loop, and
writes sent as unlogged batches grouped by replica."""

from __future__ import annotations

import asyncio
import functools
import re
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    ResponseFuture,
    Session,
)
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    TokenAwarePolicy,
)
from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement

from chatlib.settings import CassandraAccess

#: Statements per unlogged batch, and the bytes a batch may carry (Cassandra refuses batches
#: over 50 KiB by default; its warning threshold is raised to match in infra's cassandra.yaml).
BATCH_STATEMENTS = 20
BATCH_BYTES = 32 * 1024


#: How long a connection with a login may take to open; see connect.
LOGIN_CONNECT_TIMEOUT = 15.0
#: The longest wait between attempts to reach a node that went down (the driver's default
#: doubles up to 10 minutes, so a node back after a minute could wait minutes for clients),
#: tried for as long as it is down.
RECONNECT_MAX_SECONDS = 10.0

#: The execution profile whose rows are plain tuples (for the hottest reads).
TUPLES = "tuples"


def connect(access: CassandraAccess) -> tuple[Cluster, Session]:
    """A session without a current keyspace: statements name theirs (see AsyncSession)."""

    def profile(rows: Any) -> ExecutionProfile:
        return ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            # Quorum of the replicas: on one node that is the node; on three it survives one
            # loss.
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            row_factory=rows,
        )

    auth = (
        PlainTextAuthProvider(access.login.user, access.login.password)
        if access.login is not None
        else None
    )
    cluster = Cluster(
        list(access.hosts),
        port=access.port,
        auth_provider=auth,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile(named_rows), TUPLES: profile(tuple_rows)},
        # A login is a bcrypt check on the node. A node just restarted under load (its JIT
        # cold, every client reconnecting at once) takes seconds per login; an attempt given
        # up after the driver's default 5 s is work the node still does, and the retry queues
        # behind it.
        connect_timeout=LOGIN_CONNECT_TIMEOUT if auth is not None else 5.0,
        reconnection_policy=ExponentialReconnectionPolicy(
            1.0, RECONNECT_MAX_SECONDS, max_attempts=None
        ),
    )
    return cluster, cluster.connect()


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> Any:
    cleaned = [re.sub(r"\W", "_", name).strip("_") or f"column{i}" for i, name in enumerate(names)]
    return namedtuple("Row", cleaned, rename=True)


def named_rows(names: list[str], rows: list[tuple[Any, ...]]) -> list[Any]:
    """Rows as named tuples, like the driver's default factory, but with one class per column
    list for the process instead of a new class for every result."""
    make = _row_class(tuple(names))._make
    return [make(row) for row in rows]


def tuple_rows(_: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return rows


#: A table named after FROM, INTO, UPDATE, TABLE or an index's ON without a keyspace in front
#: of it.
_UNQUALIFIED = re.compile(
    r"\b(FROM|INTO|UPDATE|TABLE(?:\s+IF(?:\s+NOT)?\s+EXISTS)?"
    r"|INDEX(?:\s+IF\s+NOT\s+EXISTS)?\s+\w+\s+ON)\s+(?![A-Za-z_]\w*\.)([A-Za-z_]\w*)",
    re.IGNORECASE,
)


def qualified(cql: str, keyspace: str | None) -> str:
    """``cql`` with every table it names prefixed by ``keyspace``.

    A prepared statement that names no keyspace is resolved against whatever keyspace the
    connection that executes it has at that moment, which Cassandra warns may give wrong
    results (and logs as an error); a statement that names its keyspace means one table on
    every connection. The owners' statements name their tables alone (the keyspace is
    configuration, and a rebuild writes another one), and this is where the keyspace goes in.
    """
    if keyspace is None:
        return cql
    return _UNQUALIFIED.sub(lambda m: f"{m.group(1)} {keyspace}.{m.group(2)}", cql)


class AsyncSession:
    """``await execute(...)`` for a driver session; statements are prepared once and cached.

    Every statement names its keyspace (``qualified``); no connection ever has a current
    keyspace (``USE``), which Cassandra warns is ambiguous with prepared statements.
    """

    def __init__(self, session: Session, keyspace: str | None = None) -> None:
        self.session = session
        self.keyspace = keyspace
        self._prepared: dict[str, PreparedStatement] = {}

    def prepare(self, cql: str) -> PreparedStatement:
        statement = self._prepared.get(cql)
        if statement is None:
            statement = self.session.prepare(qualified(cql, self.keyspace))
            self._prepared[cql] = statement
        return statement

    def bind(self, cql: str, params: Sequence[Any]) -> BoundStatement:
        return self.prepare(cql).bind(list(params))

    async def execute(
        self, cql: str, params: Sequence[Any] = (), *, tuples: bool = False
    ) -> list[Any]:
        """Rows as named tuples, or as plain tuples with ``tuples`` (cheaper for many rows)."""
        statement = self.prepare(cql)
        profile = TUPLES if tuples else EXEC_PROFILE_DEFAULT
        return await self.run(
            self.session.execute_async(statement, list(params), execution_profile=profile)
        )

    async def write(self, statements: Sequence[tuple[BoundStatement, int]]) -> None:
        """Run idempotent writes, given with their approximate size in bytes, as unlogged
        batches: grouped by the first replica of each statement's partition (so a batch is
        one hop on a cluster too), at most BATCH_STATEMENTS and BATCH_BYTES each, all at once.
        """
        groups: dict[Any, list[tuple[BoundStatement, int]]] = {}
        metadata = self.session.cluster.metadata
        for statement, size in statements:
            replicas = metadata.get_replicas(statement.keyspace, statement.routing_key)
            groups.setdefault(replicas[0] if replicas else None, []).append((statement, size))
        batches: list[BatchStatement] = []
        for group in groups.values():
            batch, held = None, 0
            for statement, size in group:
                if batch is None or len(batch) >= BATCH_STATEMENTS or held + size > BATCH_BYTES:
                    batch, held = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                    batches.append(batch)
                batch.add(statement)
                held += size
        await asyncio.gather(*(self.run(self.session.execute_async(b)) for b in batches))

    @staticmethod
    async def run(response: ResponseFuture) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        found: list[Any] = []

        def ok(rows: Any) -> None:
            # The driver hands results a page (5,000 rows) at a time, to the same callbacks:
            # the rest of a larger result (a big group's members) is asked for here.
            found.extend(rows or ())
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(_settle, future, found, None)

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
