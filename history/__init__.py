"""History: Kafka consumers that persist deliveries to Cassandra, and the query service."""

from pathlib import Path

#: The CQL migrations of the tables history owns (messages, chat state, users, read marks).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
