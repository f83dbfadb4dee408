"""Plumbing shared by the services: settings, ids, hashing, adapters, telemetry, lifecycle.

No domain logic lives here, and nothing here imports a service.
"""
