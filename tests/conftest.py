"""Suite-wide rules: a test's folder decides its marker, and unit tests get no network."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_socket import disable_socket, enable_socket

KINDS = ("unit", "integration", "e2e", "cluster")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.resolve().relative_to(TESTS)
        kind = relative.parts[0] if len(relative.parts) > 1 else ""
        if kind not in KINDS:
            raise pytest.UsageError(
                f"{item.nodeid}: put tests under tests/unit, tests/integration, tests/e2e or"
                " tests/cluster"
            )
        item.add_marker(getattr(pytest.mark, kind))
    # Tests that read what the whole run left behind go after every other test; tests that
    # leave the stack changed (more partitions) go after those that expect it as it was.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("after_everything") is not None,
            item.get_closest_marker("changes_the_stack") is not None,
        )
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STARTED] = time.time()


#: When the run started (UTC seconds): what "left behind by this run" means.
STARTED = pytest.StashKey[float]()


@pytest.fixture(autouse=True)
def _network_policy(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests may use Unix sockets (the event loop needs them) but no IP networking."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        enable_socket()
