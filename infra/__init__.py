"""Brings up the real Kafka, Cassandra, Redis and Jaeger as local processes, without Docker.

Entry point: ``./dev`` at the project root (``python -m infra``).
"""
