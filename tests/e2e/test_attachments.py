"""Attachments through the real object store (SeaweedFS): a presigned upload straight to the
store, a message that names it, short-lived download links for those who can read the
message only; the store itself refuses another size or type than declared; an upload is in
one message only; a deleted message's file becomes unreachable and is swept from the store,
and so is an upload no message named in time."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from chatlib.object_store import ObjectStore, ObjectStoreAccess
from protos.chat.v1 import common_pb2, messaging_pb2
from tests.e2e.conftest import Admin, Clients, User, eventually

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
STATE = Path(__file__).resolve().parents[2] / ".infra"


async def _upload(user: User, chat: str, data: bytes, kind: str = "image/png") -> str:
    status, upload = await user.post(
        f"/v1/chats/{chat}/attachments",
        {"name": "photo.png", "size": len(data), "content_type": kind},
    )
    assert status == 201, upload
    assert upload["method"] == "PUT"
    async with user.http.put(upload["url"], data=data, headers=upload["headers"]) as response:
        assert response.status == 200, await response.text()
    return str(upload["attachment_id"])


async def _send(user: User, chat: str, attachment_id: str, key: str = "") -> tuple[int, Any]:
    return await user.post(
        f"/v1/chats/{chat}/messages",
        {
            "client_message_id": key or uuid.uuid4().hex,
            "body": "look",
            "attachments": [
                {
                    "attachment_id": attachment_id,
                    "sha256": hashlib.sha256(PNG).hexdigest(),
                    "width": 16,
                    "height": 40,
                }
            ],
        },
    )


async def _link(user: User, chat: str, message_id: str, attachment_id: str) -> tuple[int, Any]:
    path = f"/v1/chats/{chat}/messages/{message_id}/attachments/{attachment_id}"
    for _ in range(100):  # 503 only for the moment between the send and its record
        status, body = await user.get(path)
        if status != 503:
            return status, body
    raise AssertionError(f"the attachment stayed unavailable: {body}")


async def _fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


def _store() -> ObjectStore:
    secret = (STATE / "secrets" / "s3").read_text().strip()
    return ObjectStore(ObjectStoreAccess("http://127.0.0.1:8333", "chat-files", "chat", secret))


async def test_a_photo_goes_through_the_store_to_members_only(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    stranger = await clients.user("stranger")
    stream = await clients.subscribe(bob)
    await stream.caught_up()
    attachment_id = await _upload(alice, chat, PNG)
    status, sent = await _send(alice, chat, attachment_id)
    assert status == 201, sent

    [event] = await stream.messages(1)
    [carried] = event.message.attachments
    assert (carried.attachment_id, carried.name, carried.size) == (
        int(attachment_id),
        "photo.png",
        len(PNG),
    )
    assert (carried.content_type, carried.width, carried.height) == ("image/png", 16, 40)
    assert carried.sha256 == hashlib.sha256(PNG).hexdigest()

    status, link = await _link(bob, chat, sent["message_id"], attachment_id)
    assert status == 200, link
    assert link["attachment"]["name"] == "photo.png"
    assert await _fetch(bob.http, link["url"]) == (200, PNG)

    async def stored() -> list[Any] | None:
        found = await bob.history(chat)
        return found[0].get("attachments") if found else None

    [kept] = await eventually(stored)
    assert kept["attachment_id"] == attachment_id
    assert (kept["size"], kept["width"], kept["height"]) == (len(PNG), 16, 40)

    status, body = await _link(stranger, chat, sent["message_id"], attachment_id)
    assert status == 403, body
    status, body = await _link(bob, chat, sent["message_id"], str(int(attachment_id) + 1))
    assert status == 404, body
    status, body = await _link(bob, chat, str(int(sent["message_id"]) + 1), attachment_id)
    assert status == 404, body
    async with bob.http.get(link["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")) as r:
        assert r.status == 403  # the signature is what grants access


async def test_the_store_refuses_what_was_not_declared(clients: Clients, admin: Admin) -> None:
    alice, _, chat = await clients.pair()
    path = f"/v1/chats/{chat}/attachments"
    status, upload = await alice.post(
        path, {"name": "a.png", "size": len(PNG), "content_type": "image/png"}
    )
    assert status == 201, upload
    for data, kind in ((PNG + b"more", "image/png"), (PNG, "text/html")):
        async with alice.http.put(upload["url"], data=data, headers={"Content-Type": kind}) as r:
            assert r.status == 403, await r.text()

    await admin.change("files", max_bytes=1000)
    status, body = await alice.post(
        path, {"name": "a.png", "size": 1001, "content_type": "image/png"}
    )
    assert status == 400, body
    assert "files.max_bytes" in body["detail"]
    for bad in (
        {"name": "a/b.png", "size": 10, "content_type": "image/png"},
        {"name": "", "size": 10, "content_type": "image/png"},
        {"name": "a.png", "size": 0, "content_type": "image/png"},
        {"name": "a.png", "size": 10, "content_type": "png"},
        {"name": "a.png", "size": 1.5, "content_type": "image/png"},
        {"name": "a.png", "content_type": "image/png"},
    ):
        status, body = await alice.post(path, bad)
        assert status == 400, (bad, body)
    stranger = await clients.user("stranger")
    status, body = await stranger.post(
        path, {"name": "a.png", "size": 10, "content_type": "image/png"}
    )
    assert status == 403, body


async def test_an_upload_goes_in_one_message_of_its_uploader(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    carol = await clients.user("carol")
    other = await alice.open_chat(carol)
    attachment_id = await _upload(alice, chat, PNG)

    status, body = await _send(bob, chat, attachment_id)  # not his upload
    assert status == 404, body
    status, body = await _send(alice, other, attachment_id)  # uploaded for another chat
    assert status == 404, body
    status, first = await _send(alice, chat, attachment_id, key="first")
    assert status == 201, first
    status, again = await _send(alice, chat, attachment_id, key="first")  # a retry
    assert status == 200, again
    assert again["message_id"] == first["message_id"]
    status, body = await _send(alice, chat, attachment_id, key="second")
    assert status == 409, body
    assert "another message" in body["detail"]


async def test_a_deleted_message_s_file_is_unreachable_then_swept(
    clients: Clients, admin: Admin
) -> None:
    await admin.change("files", sweep_seconds=1)
    alice, bob, chat = await clients.pair()
    attachment_id = await _upload(alice, chat, PNG)
    status, sent = await _send(alice, chat, attachment_id)
    assert status == 201, sent
    status, link = await _link(bob, chat, sent["message_id"], attachment_id)
    assert status == 200, link

    status, body = await alice.call("DELETE", f"/v1/chats/{chat}/messages/{sent['message_id']}")
    assert status == 201, body
    status, body = await _link(bob, chat, sent["message_id"], attachment_id)
    assert status == 404, body

    async def swept() -> bool:  # the link made before the deletion finds nothing either
        return (await _fetch(bob.http, link["url"]))[0] == 404

    await eventually(swept)


async def test_an_upload_no_message_names_expires(clients: Clients, admin: Admin) -> None:
    alice, _, chat = await clients.pair()
    attachment_id = await _upload(alice, chat, PNG)
    await admin.change("files", sweep_seconds=1, upload_ttl_seconds=2)
    store = _store()

    async def gone() -> bool:
        async with aiohttp.ClientSession() as http:
            status, _ = await store.call(http, "GET", f"a/{attachment_id}")
        return status == 404

    await eventually(gone)
    status, body = await _send(alice, chat, attachment_id)
    assert status == 404, body


async def test_a_group_member_gets_files_within_their_window(clients: Clients) -> None:
    alice = await clients.user("owner")
    bob = await clients.user("member")
    carol = await clients.user("late")
    status, group = await alice.post(
        "/v1/groups", {"name": "files", "member_ids": [str(bob.user_id)]}
    )
    assert status == 201, group
    chat = group["chat_id"]
    attachment_id = await _upload(alice, chat, PNG)
    status, sent = await _send(alice, chat, attachment_id)
    assert status == 201, sent
    status, body = await alice.post(
        f"/v1/groups/{chat}/members", {"user_ids": [str(carol.user_id)]}
    )
    assert status == 200, body
    assert (await _link(bob, chat, sent["message_id"], attachment_id))[0] == 200
    status, body = await _link(carol, chat, sent["message_id"], attachment_id)
    assert status == 404, body  # sent before she was added: not hers to see


async def test_attachments_over_grpc(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    messaging = clients.stub(alice.messaging_server)
    metadata = (("authorization", f"Bearer {alice.token}"),)
    upload = await messaging.CreateUpload(
        messaging_pb2.CreateUploadRequest(
            chat_id=chat, name="notes.txt", size=5, content_type="text/plain"
        ),
        metadata=metadata,
    )
    async with alice.http.put(upload.url, data=b"notes", headers=dict(upload.headers)) as r:
        assert r.status == 200
    sent = await messaging.Send(
        messaging_pb2.SendRequest(
            chat_id=chat,
            client_message_id=uuid.uuid4().hex,
            body="",  # a file needs no words over gRPC
            attachments=[common_pb2.Attachment(attachment_id=upload.attachment_id)],
        ),
        metadata=metadata,
    )
    asked = messaging_pb2.GetAttachmentRequest(
        chat_id=chat, message_id=sent.message_id, attachment_id=upload.attachment_id
    )
    bobs = clients.stub(bob.messaging_server)
    link = None
    for _ in range(100):  # UNAVAILABLE only until the file is recorded with its message
        try:
            link = await bobs.GetAttachment(
                asked, metadata=(("authorization", f"Bearer {bob.token}"),)
            )
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
    assert link is not None
    assert link.attachment.name == "notes.txt"
    assert await _fetch(bob.http, link.url) == (200, b"notes")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await messaging.CreateUpload(
            messaging_pb2.CreateUploadRequest(chat_id=chat, name="x", size=-1, content_type="a/b"),
            metadata=metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
