"""Versioned CQL migrations, each owner's beside its store: ``<package>/migrations/NNNN_name.cql``.

Each table has one owner (``docs/architecture.md``, "Tables and their owners"), and the
owner's migrations create and change it: ``python -m history migrate`` and ``python -m
messaging migrate`` apply theirs. Statements are separated by ``;`` at the end of a line and
name their tables alone (the keyspace is put in front, ``chatlib/cassandra.py:qualified``).
Applied versions are recorded per owner in ``schema_versions``. Every statement is idempotent
(``IF NOT EXISTS``), so a run interrupted half-way is simply run again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from cassandra.cluster import Session

from chatlib import cassandra
from chatlib.cassandra import qualified
from chatlib.settings import Common

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_(\w+)\.cql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load(folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match is None:
            continue
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.strip().startswith("--")
        )
        statements = tuple(s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip())
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migration versions in {folder} must be 1..n without gaps: {versions}")
    return found


def apply(session: Session, keyspace: str, replication: str, owner: str, folder: Path) -> list[int]:
    """Create the keyspace if needed and apply ``owner``'s pending migrations from ``folder``;
    returns what was applied."""
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    # Every statement names the keyspace (never USE, which Cassandra warns about).
    session.execute(
        qualified(
            "CREATE TABLE IF NOT EXISTS schema_versions (owner text, version int, name text,"
            " applied_at timestamp, PRIMARY KEY (owner, version))",
            keyspace,
        )
    )
    done = {
        row.version
        for row in session.execute(
            qualified("SELECT version FROM schema_versions WHERE owner = %s", keyspace), (owner,)
        )
    }
    applied = []
    for migration in load(folder):
        if migration.version in done:
            continue
        for statement in migration.statements:
            session.execute(qualified(statement, keyspace))
        session.execute(
            qualified(
                "INSERT INTO schema_versions (owner, version, name, applied_at)"
                " VALUES (%s, %s, %s, toTimestamp(now()))",
                keyspace,
            ),
            (owner, migration.version, migration.name),
        )
        logger.info("applied %s migration %04d_%s", owner, migration.version, migration.name)
        applied.append(migration.version)
    return applied


#: A keyspace name a command accepts.
KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


def migrate(common: Common, owner: str, folder: Path) -> int:
    """``python -m <owner> migrate``: apply the owner's pending migrations to the live
    keyspace, saying what was applied."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cluster, session = cassandra.connect(common.cassandra)
    try:
        applied = apply(session, common.keyspace, common.keyspace_replication, owner, folder)
    finally:
        cluster.shutdown()
    print(f"keyspace {common.keyspace}, {owner}: applied {applied or 'nothing, up to date'}")
    return 0
