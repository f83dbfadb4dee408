"""Shared pieces of the two JVM services (Kafka, Cassandra)."""

from __future__ import annotations

from pathlib import Path


def classpath(lib: Path) -> str:
    # A wildcard entry: the JVM expands it to every jar in the folder.
    return f"{lib}/*"


def options_file(path: Path) -> list[str]:
    """JVM flags from a checked-in file: one per line, ``#`` starts a comment line."""
    flags: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            flags.append(stripped)
    return flags
