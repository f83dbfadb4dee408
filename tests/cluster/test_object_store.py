"""The cluster's object store loses no file it acknowledged when a node dies: files sent in
messages before the fault, while the node is down (a client retries an upload the store
refused) and after it is back all download byte for byte through the balancer, during the
fault and after it. The node killed is the one whose gateway the balancer uses and that holds
a copy of a file sent before."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
import uuid
from typing import Any

import aiohttp
import pytest

from infra import cluster
from infra.services import seaweedfs
from tests.cluster.conftest import Nodes
from tests.e2e.conftest import Clients, User

#: How long a client keeps trying an upload, a send or a download across the failover.
PATIENCE = 120.0
BUCKET_DIR = "/buckets/chat-files/a"


def _volume_holders(attachment_id: str) -> set[int]:
    """The nodes whose volume servers hold a copy of the file (asked of a filer and a master
    directly, not through the balancer)."""
    node = seaweedfs.SeaweedFSNode(2)
    filer = f"http://{node.host}:{node.ports['filer']}"
    url = f"{filer}{BUCKET_DIR}/{attachment_id}?metadata=true"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        entry = json.load(response)
    holders: set[int] = set()
    for chunk in entry.get("chunks", []):
        volume = chunk.get("fid", {}).get("volume_id") or chunk["file_id"].split(",")[0]
        lookup = f"http://{node.host}:{node.master_port}/dir/lookup?volumeId={volume}"
        with urllib.request.urlopen(lookup, timeout=10) as response:
            found = json.load(response)
        by_address = {a: n for n, a in cluster.OBJECT_STORE_ADDRESSES.items()}
        holders |= {by_address[loc["url"].split(":")[0]] for loc in found["locations"]}
    return holders


async def _retried(what: str, attempt: Any) -> Any:
    """``attempt()`` until it returns something, as a client retries: None or an error means
    not yet."""
    deadline = asyncio.get_running_loop().time() + PATIENCE
    last: object = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            result = await attempt()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result, last = None, exc
        if result is not None:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not done within {PATIENCE} s (last: {last!r})")


async def _send_file(user: User, chat: str, data: bytes) -> tuple[str, str]:
    """Upload and send one file: (message id, attachment id), once the store and the chat
    acknowledged them."""
    status, upload = await user.post(
        f"/v1/chats/{chat}/attachments",
        {"name": "f.bin", "size": len(data), "content_type": "application/octet-stream"},
    )
    assert status == 201, upload

    async def put() -> bool | None:
        async with user.http.put(upload["url"], data=data, headers=upload["headers"]) as r:
            return True if r.status == 200 else None

    await _retried("an upload", put)
    key = uuid.uuid4().hex

    async def send() -> str | None:
        status, sent = await user.post(
            f"/v1/chats/{chat}/messages",
            {
                "client_message_id": key,
                "body": "a file",
                "attachments": [{"attachment_id": upload["attachment_id"]}],
            },
        )
        return str(sent["message_id"]) if status in (200, 201) else None

    return await _retried("a send", send), str(upload["attachment_id"])


async def _download(user: User, chat: str, message_id: str, attachment_id: str) -> bytes:
    path = f"/v1/chats/{chat}/messages/{message_id}/attachments/{attachment_id}"

    async def fetch() -> bytes | None:
        status, link = await user.get(path)
        if status != 200:
            return None
        async with user.http.get(link["url"]) as response:
            return await response.read() if response.status == 200 else None

    found: bytes = await _retried(f"downloading {attachment_id}", fetch)
    return found


@pytest.mark.timeout(900)
async def test_an_object_store_node_killed(clients: Clients, nodes: Nodes) -> None:
    alice, bob, chat = await clients.pair()
    victim = 1  # the balancer's gateway while it lives
    sent: dict[tuple[str, str], bytes] = {}
    # Before: files until one has a copy on the victim (each is on two of the three nodes).
    for _ in range(12):
        data = os.urandom(64 * 1024)
        message_id, attachment_id = await _send_file(alice, chat, data)
        sent[(message_id, attachment_id)] = data
        if victim in await asyncio.to_thread(_volume_holders, attachment_id):
            break
    else:
        pytest.fail("no file of 12 has a copy on node 1")
    holders = await asyncio.to_thread(_volume_holders, attachment_id)
    assert len(holders) == 2, holders  # written to two volume servers

    await nodes.kill(nodes.object_store[victim])
    try:
        for key, data in sent.items():
            assert await _download(bob, chat, *key) == data, key
        for _ in range(3):
            data = os.urandom(64 * 1024)
            sent[await _send_file(alice, chat, data)] = data
        for key, data in sent.items():
            assert await _download(bob, chat, *key) == data, key
    finally:
        await nodes.start(nodes.object_store[victim])

    # Back: every file, those sent while it was away included, through its gateway again.
    data = os.urandom(64 * 1024)
    sent[await _send_file(alice, chat, data)] = data
    for key, data in sent.items():
        assert await _download(bob, chat, *key) == data, key
