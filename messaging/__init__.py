"""Messaging: the gRPC server clients send through and receive live events from."""

from pathlib import Path

#: The CQL migrations of the tables messaging owns (``chats``, ``group_members``, ``blocks``).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
