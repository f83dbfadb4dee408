"""Avatars: a picture uploaded straight to the object store, made the user's by a profile
change (a `profile` event tells their contacts), linked for any logged-in user; a replaced or
removed picture is refused and swept from the store; bad uploads and ids are named."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, Admin, Clients, User, eventually

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
OTHER = b"\x89PNG\r\n\x1a\n" + bytes(reversed(range(256))) * 9


async def _upload(user: User, data: bytes, kind: str = "image/png") -> str:
    status, upload = await user.post("/v1/me/avatar", {"size": len(data), "content_type": kind})
    assert status == 201, upload
    async with user.http.put(upload["url"], data=data, headers=upload["headers"]) as response:
        assert response.status == 200, await response.text()
    return str(upload["attachment_id"])


async def _choose(user: User, avatar_id: str | None) -> tuple[int, Any]:
    return await user.call("PUT", "/v1/me/profile", {"avatar_id": avatar_id})


async def _fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


async def test_an_avatar_is_shown_to_anyone_and_told_to_contacts(clients: Clients) -> None:
    alice, bob, _ = await clients.pair()
    stranger = await clients.user("stranger")
    stream = await clients.subscribe(bob)
    await stream.caught_up()
    status, _ = await alice.call("PUT", "/v1/me/profile", {"display_name": "Alice"})
    assert status == 200
    assert (await stream.next()).profile.display_name == "Alice"

    avatar_id = await _upload(alice, PICTURE)
    status, me = await _choose(alice, avatar_id)
    assert status == 200, me
    assert (me["avatar_id"], me["display_name"]) == (avatar_id, "Alice")  # the name stays
    event = await stream.next()
    assert event.WhichOneof("event") == "profile", event
    assert (event.profile.user_id, event.profile.avatar_id) == (alice.user_id, int(avatar_id))

    status, link = await stranger.get(f"/v1/users/{alice.user_id}/avatar")
    assert status == 200, link
    assert link["attachment"]["attachment_id"] == avatar_id
    assert link["attachment"]["content_type"] == "image/png"
    assert await _fetch(stranger.http, link["url"]) == (200, PICTURE)
    assert (await stranger.get(f"/v1/users/{alice.user_id}"))[1]["avatar_id"] == avatar_id
    status, batch = await bob.get(f"/v1/profiles?user_ids={alice.user_id},{bob.user_id}")
    assert status == 200, batch
    shown = {p["user_id"]: p["avatar_id"] for p in batch["profiles"]}
    assert shown == {str(alice.user_id): avatar_id, str(bob.user_id): None}
    assert (await alice.get(f"/v1/users/{bob.user_id}/avatar"))[0] == 404  # bob has none


async def test_a_replaced_or_removed_avatar_is_refused_then_swept(
    clients: Clients, admin: Admin
) -> None:
    await admin.change("files", sweep_seconds=1)
    alice, bob, _ = await clients.pair()
    first = await _upload(alice, PICTURE)
    assert (await _choose(alice, first))[0] == 200
    assert (await _choose(alice, first))[0] == 200  # choosing it again changes nothing
    status, old_link = await bob.get(f"/v1/users/{alice.user_id}/avatar")
    assert status == 200, old_link

    second = await _upload(alice, OTHER, "image/webp")
    status, me = await _choose(alice, second)
    assert (status, me["avatar_id"]) == (200, second), me
    status, link = await bob.get(f"/v1/users/{alice.user_id}/avatar")
    assert (status, link["attachment"]["content_type"]) == (200, "image/webp"), link
    assert await _fetch(bob.http, link["url"]) == (200, OTHER)

    async def swept(url: str) -> bool:  # a link made before the change finds nothing either
        return (await _fetch(bob.http, url))[0] == 404

    await eventually(lambda: swept(old_link["url"]))
    status, refused = await _choose(alice, first)  # a replaced picture cannot come back
    assert status == 404, refused

    status, me = await _choose(alice, None)
    assert (status, me["avatar_id"]) == (200, None), me
    assert (await bob.get(f"/v1/users/{alice.user_id}/avatar"))[0] == 404
    await eventually(lambda: swept(link["url"]))


async def test_bad_avatars_name_the_problem(clients: Clients) -> None:
    alice, bob, chat = await clients.pair()
    for body, field in (
        ({"size": 10, "content_type": "text/plain"}, "content_type"),
        ({"size": 5 * 2**20 + 1, "content_type": "image/png"}, "size"),
        ({"size": 0, "content_type": "image/png"}, "size"),
        ({"size": "ten", "content_type": "image/png"}, "size"),
        ({"size": 10}, "content_type"),
    ):
        status, refused = await alice.post("/v1/me/avatar", body)
        assert status == 400, (body, refused)
        assert field in refused["detail"], (body, refused)

    status, upload = await alice.post("/v1/me/avatar", {"size": 10, "content_type": "image/png"})
    assert status == 201, upload
    async with alice.http.put(upload["url"], data=b"0123456789", headers={}) as response:
        assert response.status == 403  # not the type declared: the store refuses it
    status, refused = await _choose(alice, upload["attachment_id"])
    assert status == 409, refused  # no bytes yet
    assert "upload" in refused["detail"]

    status, message_file = await alice.post(
        f"/v1/chats/{chat}/attachments", {"name": "a.png", "size": 4, "content_type": "image/png"}
    )
    assert status == 201, message_file
    bobs = await _upload(bob, PICTURE)
    for avatar_id in (message_file["attachment_id"], bobs, "123456789", "18446744073709551615"):
        status, refused = await _choose(alice, avatar_id)
        assert status == 404, (avatar_id, refused)
    for avatar_id in ("abc", 12, "0"):
        status, refused = await _choose(alice, avatar_id)  # type: ignore[arg-type]
        assert status == 400, (avatar_id, refused)
        assert "avatar_id" in refused["detail"]
    status, refused = await alice.call("PUT", "/v1/me/profile", {})
    assert status == 400, refused
    assert "avatar_id" in refused["detail"]

    assert (await alice.get("/v1/users/123456789/avatar"))[0] == 404
    assert (await alice.get("/v1/users/abc/avatar"))[0] == 400
    async with alice.http.get(f"{BFF}/v1/users/{bob.user_id}/avatar") as response:
        assert response.status == 401
    assert (await alice.get(f"/v1/users/{alice.user_id}"))[1]["avatar_id"] is None


async def test_avatars_over_grpc(clients: Clients) -> None:
    alice, bob, _ = await clients.pair()
    stub = clients.stub(alice.messaging_server)
    metadata = (("authorization", f"Bearer {alice.token}"),)
    await stub.UpdateProfile(
        messaging_pb2.UpdateProfileRequest(display_name="A"), metadata=metadata
    )
    upload = await stub.CreateAvatarUpload(
        messaging_pb2.CreateAvatarUploadRequest(size=len(PICTURE), content_type="image/jpeg"),
        metadata=metadata,
    )
    async with alice.http.put(upload.url, data=PICTURE, headers=dict(upload.headers)) as r:
        assert r.status == 200
    profile = await stub.UpdateProfile(
        messaging_pb2.UpdateProfileRequest(avatar_id=upload.attachment_id), metadata=metadata
    )
    assert (profile.avatar_id, profile.display_name) == (upload.attachment_id, "A")

    bobs = clients.stub(bob.messaging_server)
    bob_metadata = (("authorization", f"Bearer {bob.token}"),)
    link = await bobs.GetAvatar(
        messaging_pb2.GetAvatarRequest(user_id=alice.user_id), metadata=bob_metadata
    )
    assert link.attachment.content_type == "image/jpeg"
    assert await _fetch(bob.http, link.url) == (200, PICTURE)
    for asked in (bob.user_id, 0, 2**64 - 1):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bobs.GetAvatar(
                messaging_pb2.GetAvatarRequest(user_id=asked), metadata=bob_metadata
            )
        expected = grpc.StatusCode.INVALID_ARGUMENT if asked == 0 else grpc.StatusCode.NOT_FOUND
        assert refused.value.code() == expected, asked

    profile = await stub.UpdateProfile(
        messaging_pb2.UpdateProfileRequest(avatar_id=0), metadata=metadata
    )
    assert (profile.avatar_id, profile.display_name) == (0, "A")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateAvatarUpload(
            messaging_pb2.CreateAvatarUploadRequest(size=10, content_type="image/svg+xml"),
            metadata=metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
