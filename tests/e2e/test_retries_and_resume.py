"""Retries never duplicate; an offline user gets what they missed, each message once."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from protos.chat.v1 import messaging_pb2
from tests.e2e.conftest import Clients, eventually


async def test_a_retried_send_is_one_message_everywhere(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    bob_stream = await clients.subscribe(bob)
    await bob_stream.caught_up()
    client_id = uuid.uuid4().hex
    stub = clients.stub(alice.messaging_server)
    metadata = (("authorization", f"Bearer {alice.token}"),)
    request = messaging_pb2.SendRequest(chat_id=chat_id, client_message_id=client_id, body="once")

    # The first answer is lost: the client gives up on the call after sending it.
    call = stub.Send(request, metadata=metadata)
    await asyncio.sleep(0.3)
    call.cancel()
    # Then it retries, over gRPC and over HTTP, as a client with a flaky network would.
    first = await stub.Send(request, metadata=metadata)
    second = await stub.Send(request, metadata=metadata)
    via_http = await alice.send(chat_id, "once", client_id)
    assert first.message_id == second.message_id == via_http
    assert second.duplicate

    [event] = await bob_stream.messages(1)
    assert event.message.message_id == first.message_id
    # A later message arrives next: nothing for the retried one was queued in between.
    later = await alice.send(chat_id, "later")
    [after] = await bob_stream.messages(1)
    assert after.message.message_id == later

    async def both_in_history() -> list[dict[str, object]] | None:
        page = await bob.history(chat_id)
        return page if len(page) >= 2 else None

    page = await eventually(both_in_history)
    assert [m["message_id"] for m in page] == [str(later), str(first.message_id)]
    [chat] = await bob.chats()
    assert chat["unread_count"] == 2


async def test_an_offline_user_gets_every_missed_message_once_on_resume(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    stream = await clients.subscribe(bob)
    await stream.caught_up()
    seen = [await alice.send(chat_id, "while online")]
    [event] = await stream.messages(1)
    assert event.message.message_id == seen[0]
    cursor = stream.cursor
    stream.call.cancel()

    missed = [await alice.send(chat_id, f"while offline {n}") for n in range(5)]

    resumed = await clients.subscribe(bob, cursor)
    replayed = await resumed.messages(5)
    assert [e.message.message_id for e in replayed] == missed
    await resumed.caught_up()
    live = await alice.send(chat_id, "back online")
    [event] = await resumed.messages(1)
    assert event.message.message_id == live


async def test_a_stream_on_the_wrong_server_is_refused_with_the_right_address(
    clients: Clients,
) -> None:
    bob = await clients.user("bob")
    wrong = "127.0.0.1:7101" if bob.messaging_server.endswith("7102") else "127.0.0.1:7102"
    call = clients.stub(wrong).Subscribe(
        messaging_pb2.SubscribeRequest(), metadata=(("authorization", f"Bearer {bob.token}"),)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bob.messaging_server in (refused.value.details() or "")
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers.get("chat-redirect") == bob.messaging_server
