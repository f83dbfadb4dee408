"""Which stack ``./dev`` runs: the single-node one (the default) or the cluster
(``./dev up --cluster``). One runs at a time: the machine has two cores, and our services hold
the same ports in either. The choice is kept in ``.infra/mode`` so that ``status``, ``restart``
and ``logs`` speak of the stack that runs."""

from __future__ import annotations

from typing import Literal

from infra.layout import Layout

Mode = Literal["single", "cluster"]
SINGLE: Mode = "single"
CLUSTER: Mode = "cluster"


def current(layout: Layout) -> Mode:
    """The stack last brought up (single when none was)."""
    path = layout.state / "mode"
    return CLUSTER if path.is_file() and path.read_text().strip() == CLUSTER else SINGLE


def record(layout: Layout, mode: Mode) -> None:
    layout.state.mkdir(parents=True, exist_ok=True)
    (layout.state / "mode").write_text(mode + "\n")
