"""A keyspace and table created with cassandra-driver store a row and return it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra.cluster import Session

from chatlib import cassandra
from tests.integration.conftest import Endpoints


@pytest.fixture
def session(endpoints: Endpoints) -> Iterator[Session]:
    cluster, connected = cassandra.connect(endpoints.cassandra)
    yield connected
    cluster.shutdown()


@pytest.fixture
def keyspace(session: Session, unique: str) -> Iterator[str]:
    session.execute(
        f"CREATE KEYSPACE {unique} WITH replication ="
        " {'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    yield unique
    session.execute(f"DROP KEYSPACE {unique}")


def test_a_row_is_stored_and_read_back(session: Session, keyspace: str) -> None:
    session.execute(
        f"CREATE TABLE {keyspace}.messages_by_chat ("
        " chat_id text, bucket int, message_id bigint, sender bigint, body text,"
        " PRIMARY KEY ((chat_id, bucket), message_id)"
        ") WITH CLUSTERING ORDER BY (message_id DESC)"
    )
    insert = session.prepare(
        f"INSERT INTO {keyspace}.messages_by_chat (chat_id, bucket, message_id, sender, body)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    body = f"héllo {uuid.uuid4()}"
    session.execute(insert, ("d:1:2", 7, 1001, 1, "first"))
    session.execute(insert, ("d:1:2", 7, 1002, 2, body))

    rows: list[Any] = list(
        session.execute(
            f"SELECT message_id, sender, body FROM {keyspace}.messages_by_chat"
            " WHERE chat_id = %s AND bucket = %s",
            ("d:1:2", 7),
        )
    )
    assert [(row.message_id, row.sender, row.body) for row in rows] == [
        (1002, 2, body),
        (1001, 1, "first"),
    ]
