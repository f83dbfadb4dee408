"""A user sends; the other receives live, the sender's other device gets the echo, and both
find it in history and in their chat lists."""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.e2e.conftest import Clients, User, eventually


async def newest_is(user: User, message_id: int) -> list[dict[str, Any]] | None:
    chats = await user.chats()
    return chats if chats and chats[0]["last_message_id"] == str(message_id) else None


async def test_alice_sends_and_bob_receives_live_and_in_history(clients: Clients) -> None:
    alice = await clients.user("alice")
    bob = await clients.user("bob")
    alice_phone = await clients.login(alice.username)
    chat_id = await alice.open_chat(bob)

    bob_stream = await clients.subscribe(bob)
    phone_stream = await clients.subscribe(alice_phone)
    await bob_stream.caught_up()
    await phone_stream.caught_up()

    message_id = await alice.send(chat_id, "hi bob 👋")

    [received] = await bob_stream.messages(1)
    assert received.message.message_id == message_id
    assert received.message.body == "hi bob 👋"
    assert received.message.sender_id == alice.user_id
    assert received.message.chat_id == chat_id
    [echo] = await phone_stream.messages(1)
    assert echo.message.message_id == message_id

    async def in_history() -> list[dict[str, object]]:
        return await bob.history(chat_id)

    page = await eventually(in_history)
    assert [(m["message_id"], m["body"], m["sender_id"]) for m in page] == [
        (str(message_id), "hi bob 👋", str(alice.user_id))
    ]

    for user, unread in ((alice, 0), (bob, 1)):
        [chat] = await eventually(partial(newest_is, user, message_id))
        assert chat["chat_id"] == chat_id
        assert chat["last_preview"] == "hi bob 👋"
        assert chat["unread_count"] == unread


async def test_history_pages_by_message_id_cursor(clients: Clients) -> None:
    alice, bob, chat_id = await clients.pair()
    sent = [await alice.send(chat_id, f"message {n}") for n in range(7)]

    async def all_there() -> bool:
        return len(await bob.history(chat_id, limit="50")) == 7

    await eventually(all_there)
    newest = await bob.history(chat_id, limit="3")
    assert [int(m["message_id"]) for m in newest] == sent[::-1][:3]
    older = await bob.history(chat_id, limit="3", before=newest[-1]["message_id"])
    assert [int(m["message_id"]) for m in older] == sent[::-1][3:6]
    newer = await bob.history(chat_id, limit="10", after=str(sent[1]))
    assert [int(m["message_id"]) for m in newer] == sent[2:]
