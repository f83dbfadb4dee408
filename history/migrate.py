"""Versioned CQL migrations: ``python -m history migrate`` applies the ones not yet applied.

Files are ``migrations/NNNN_name.cql``; statements are separated by ``;`` at the end of a line.
Applied versions are recorded in ``schema_migrations``. Every statement is idempotent
(``IF NOT EXISTS``), so a run interrupted half-way is simply run again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from cassandra.cluster import Session

from chatlib.cassandra import qualified

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_(\w+)\.cql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load(folder: Path = MIGRATIONS) -> list[Migration]:
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
        raise ValueError(f"migration versions must be 1..n without gaps, found {versions}")
    return found


def apply(session: Session, keyspace: str, replication: str) -> list[int]:
    """Create the keyspace if needed and apply pending migrations; returns what was applied."""
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
    # Every statement names the keyspace (never USE, which Cassandra warns about).
    session.execute(
        qualified(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version int PRIMARY KEY, name text, applied_at timestamp)",
            keyspace,
        )
    )
    done = {
        row.version
        for row in session.execute(qualified("SELECT version FROM schema_migrations", keyspace))
    }
    applied = []
    for migration in load():
        if migration.version in done:
            continue
        for statement in migration.statements:
            session.execute(qualified(statement, keyspace))
        session.execute(
            qualified(
                "INSERT INTO schema_migrations (version, name, applied_at)"
                " VALUES (%s, %s, toTimestamp(now()))",
                keyspace,
            ),
            (migration.version, migration.name),
        )
        logger.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
