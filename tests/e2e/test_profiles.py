"""Profiles: a display name recorded in the users log and shown by id and in batches, told to
the user's contacts' streams as it changes; a password change that ends every other session
of the user; bad input named."""

from __future__ import annotations

import grpc
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import BFF, PASSWORD, Admin, Clients


async def test_a_display_name_is_shown_by_id_in_batches_and_told_to_contacts(
    clients: Clients,
) -> None:
    alice, bob, _ = await clients.pair()
    stream = await clients.subscribe(bob)
    await stream.caught_up()

    status, me = await alice.call("PUT", "/v1/me/profile", {"display_name": "Alice Ä."})
    assert status == 200, me
    assert (me["user_id"], me["display_name"]) == (str(alice.user_id), "Alice Ä.")
    event = await stream.next()
    assert event.WhichOneof("event") == "profile", event
    assert (event.profile.user_id, event.profile.display_name) == (alice.user_id, "Alice Ä.")
    assert event.profile.username == alice.username

    status, found = await bob.get(f"/v1/users/{alice.user_id}")
    assert (status, found["display_name"], found["username"]) == (200, "Alice Ä.", alice.username)
    status, batch = await bob.get(f"/v1/profiles?user_ids={alice.user_id},{bob.user_id},1")
    assert status == 200, batch
    shown = {p["user_id"]: p["display_name"] for p in batch["profiles"]}
    assert shown == {str(alice.user_id): "Alice Ä.", str(bob.user_id): ""}

    status, me = await alice.call("PUT", "/v1/me/profile", {"display_name": ""})
    assert (status, me["display_name"]) == (200, "")
    assert (await bob.get(f"/v1/users/{alice.user_id}"))[1]["display_name"] == ""


async def test_bad_profiles_name_the_problem(clients: Clients) -> None:
    alice = await clients.user("alice")
    for body in ({"display_name": "a\x07b"}, {"display_name": "x" * 65}, {}, {"display_name": 3}):
        status, refused = await alice.call("PUT", "/v1/me/profile", body)
        assert status == 400, (body, refused)
        assert "display_name" in refused["detail"]
    for query in ("", "?user_ids=", "?user_ids=abc", "?user_ids=" + ",".join(["1"] * 201)):
        status, refused = await alice.get(f"/v1/profiles{query}")
        assert status == 400, (query, refused)
    async with alice.http.put(f"{BFF}/v1/me/profile", json={"display_name": "x"}) as response:
        assert response.status == 401


async def test_a_password_change_ends_the_other_sessions(clients: Clients) -> None:
    alice = await clients.user("alice")
    other = await clients.login(alice.username)  # a second device
    path = "/v1/me/password"
    status, refused = await alice.call(
        "PUT", path, {"current_password": "wrong-password", "new_password": "n3w-password"}
    )
    assert status == 403, refused
    assert "current_password" in refused["detail"]
    status, refused = await alice.call(
        "PUT", path, {"current_password": PASSWORD, "new_password": "short"}
    )
    assert status == 400, refused

    status, done = await alice.call(
        "PUT", path, {"current_password": PASSWORD, "new_password": "n3w-password"}
    )
    assert status == 200, done
    assert done["sessions_ended"] >= 1
    assert (await other.get("/v1/chats"))[0] == 401  # the other device is logged out
    assert (await alice.get("/v1/chats"))[0] == 200  # this one goes on
    for password, expected in ((PASSWORD, 401), ("n3w-password", 201)):
        async with alice.http.post(
            f"{BFF}/v1/sessions", json={"username": alice.username, "password": password}
        ) as response:
            assert response.status == expected, await response.text()


async def test_wrong_current_passwords_spend_the_failed_login_budget(
    clients: Clients, admin: Admin
) -> None:
    budget = (await admin.get("auth"))["value"]["login_failures_per_username"]
    alice = await clients.user("guessed")
    wrong = {"current_password": "not-the-password", "new_password": "n3w-password"}
    statuses = [(await alice.call("PUT", "/v1/me/password", wrong))[0] for _ in range(budget + 1)]
    assert statuses == [403] * budget + [429], statuses
    # Spent by password changes, the budget refuses logins of that username too, right
    # password and all (one budget, whichever door the guesses come through).
    async with alice.http.post(
        f"{BFF}/v1/sessions", json={"username": alice.username, "password": PASSWORD}
    ) as response:
        assert response.status == 429, await response.text()


async def test_a_profile_over_grpc(clients: Clients) -> None:
    alice, bob, _ = await clients.pair()
    stub = clients.stub(alice.messaging_server)
    metadata = (("authorization", f"Bearer {alice.token}"),)
    profile = await stub.UpdateProfile(
        messaging_pb2.UpdateProfileRequest(display_name="A over gRPC"), metadata=metadata
    )
    assert (profile.user_id, profile.display_name) == (alice.user_id, "A over gRPC")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UpdateProfile(
            messaging_pb2.UpdateProfileRequest(display_name="\n"), metadata=metadata
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await bob.get(f"/v1/users/{alice.user_id}"))[1]["display_name"] == "A over gRPC"
