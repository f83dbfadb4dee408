"""How the benchmarks reach the stack ``./dev`` runs here: the cluster over TLS, verified
against its CA; the single-node stack in plaintext (``clients/deployment.py``, ``local``)."""

from __future__ import annotations

from typing import Any

from clients import deployment

HERE = deployment.local()


def generator_tls() -> dict[str, Any]:
    """What the load generator's plan says of TLS (``bench/loadgen``)."""
    return {"tls": HERE.tls, "tls_ca": str(HERE.ca) if HERE.ca else ""}
