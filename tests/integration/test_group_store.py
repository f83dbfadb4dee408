"""A large group's membership against the real Cassandra: every member is read back, past the
driver's page size, without the last change's blob coming back once per member."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import messaging
from chatlib import cassandra, migrations
from messaging.groups import rules
from messaging.groups.store import GroupStore
from tests.integration.conftest import REPLICATION, Endpoints

#: More than the driver's page (5,000 rows), in changes of at most MAX_PER_CALL users.
MEMBERS = 6_500


@pytest.fixture
def db(endpoints: Endpoints, unique: str) -> Iterator[cassandra.AsyncSession]:
    cluster, session = cassandra.connect(endpoints.cassandra)
    try:
        migrations.apply(session, unique, REPLICATION, "messaging", messaging.MIGRATIONS)
        yield cassandra.AsyncSession(session, unique)
        session.execute(f"DROP KEYSPACE IF EXISTS {unique}")
    finally:
        cluster.shutdown()


async def test_a_group_larger_than_a_page_loads_whole(db: cassandra.AsyncSession) -> None:
    store = GroupStore(db)
    chat = "g:424242"
    owner = 10**12
    users = [owner + n for n in range(1, MEMBERS)]
    per_call = rules.MAX_PER_CALL
    state = await store.load(chat)
    plan = rules.create(owner, "big", users[: per_call - 1], MEMBERS)
    # Each change's entry is about as large as a real one: its subjects, 9 bytes each.
    assert await store.apply(state, plan, 1000, b"x" * 9 * per_call)
    for n, start in enumerate(range(per_call - 1, len(users), per_call)):
        state = await store.load(chat)
        added = rules.add(state, owner, users[start : start + per_call], MEMBERS)
        assert added is not None
        assert await store.apply(state, added, 2000 + n, b"y" * 9 * per_call)
    state = await store.load(chat)
    assert state.members == frozenset([owner, *users])
    assert state.version == 1 + len(range(per_call - 1, len(users), per_call))
    assert (state.name, state.last_change) == ("big", b"y" * 9 * per_call)
    # Static cells are not repeated per member: the result of the members' read carries no
    # change entry.
    rows = await db.execute(
        "SELECT user_id, role, since_id, until_id, version FROM group_members WHERE chat_id = ?",
        (chat,),
    )
    assert len(rows) == MEMBERS
