"""A cluster Redis node (its ACL file, ``infra/services/redis.py``) restarted after a crash
keeps what its services wrote in scripts: Redis replays the append-only file's MULTI/EXEC
blocks as the default user, so that user's rights decide whether they come back."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from infra import cluster
from infra.services.redis import users_acl

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, folder: Path, keys: cluster.Secrets) -> None:
        self.folder = folder
        self.port = _free_port()
        (folder / "users.acl").write_text(users_acl(keys))
        (folder / "redis.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\naclfile {folder / 'users.acl'}\n"
            'appendonly yes\nappendfsync always\nsave ""\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(self.folder / "redis.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def client(self, user: str, password: str) -> redis.Redis:
        found = redis.Redis(port=self.port, username=user, password=password, socket_timeout=5)
        deadline = time.monotonic() + 20
        while True:
            try:
                found.ping()
                return found
            except (redis.BusyLoadingError, redis.ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    keys = cluster.Secrets(tmp_path / "secrets")
    found = Node(tmp_path, keys)
    found.start()
    try:
        yield found, keys.password("redis-messaging")
    finally:
        if found.process is not None and found.process.poll() is None:
            found.kill()


def test_what_a_script_wrote_is_there_after_a_crash(node: tuple[Node, str]) -> None:
    server, password = node
    writer = server.client("messaging", password)
    # A script's writes go to the append-only file as one MULTI/EXEC block.
    writer.eval("redis.call('SET', KEYS[1], 'kept'); redis.call('INCR', KEYS[2])", 2, "a", "b")
    writer.set("plain", "kept")
    writer.close()
    server.kill()
    server.start()
    reader = server.client("messaging", password)
    assert reader.get("plain") == b"kept"
    assert reader.get("a") == b"kept"
    assert reader.get("b") == b"1"
    reader.close()
    # And nobody logs in as the default user.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port, password="", socket_timeout=5).ping()
