import socket

import pytest
from pytest_socket import SocketBlockedError


def test_unit_tests_cannot_open_an_ip_socket() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9092), timeout=1)


def test_unit_tests_are_marked_unit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None


async def test_an_event_loop_still_works_in_unit_tests() -> None:
    # asyncio's self-pipe is a Unix socket pair; it must stay allowed.
    reader, writer = socket.socketpair()
    reader.close()
    writer.close()
