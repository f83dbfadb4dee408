"""After the whole run: Cassandra never had to resolve one of our statements against a
keyspace the statement does not name (it logs an error when it did, since the result may come
from the wrong keyspace), nobody set a connection's keyspace with ``USE``, and no statement was
given its keyspace beside its text (which Cassandra warns about)."""

from __future__ import annotations

import datetime
import re

import pytest

from infra.layout import Layout
from tests.conftest import STARTED

#: A line of Cassandra's log: level, thread, then the time it was written (UTC here).
_LINE = re.compile(r"^(\w+)\s+\[[^\]]*\]\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\s")
_AMBIGUOUS = (
    "unqalified statement",
    "unqualified statement",
    "USE <keyspace>",
    "Keyspace is set via query options",
)


@pytest.mark.after_everything
def test_cassandra_saw_no_statement_without_its_keyspace(request: pytest.FixtureRequest) -> None:
    started = datetime.datetime.fromtimestamp(request.config.stash[STARTED], datetime.UTC)
    log = Layout.from_env().log("cassandra")
    assert log.is_file(), f"no Cassandra log at {log}"
    found = []
    written = None
    for line in log.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is not None:
            written = datetime.datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S").replace(
                tzinfo=datetime.UTC
            )
        if written is None or written < started - datetime.timedelta(seconds=1):
            continue
        if any(phrase in line for phrase in _AMBIGUOUS):
            found.append(line[:300])
    assert found == []
