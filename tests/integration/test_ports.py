"""A port that something else holds is refused before start, naming the port."""

from __future__ import annotations

import socket

import pytest

from infra.errors import PortInUse
from infra.processes import check_ports_free


def test_a_held_port_is_named_with_its_purpose() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=rf"kafka: port {port} \(client\) on 127.0.0.1"):
            check_ports_free("kafka", {"client": port})


def test_a_free_port_passes() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_ports_free("kafka", {"client": port})


def test_connections_lingering_after_a_server_stopped_do_not_count_as_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        # The server side closes first, so its end of the connection sits in TIME_WAIT.
        accepted.close()
        client.close()
    check_ports_free("jaeger", {"query HTTP": port})
