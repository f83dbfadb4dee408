"""Notifications for offline users: one webhook call per burst, none while online, retried,
dead-lettered, previews as the user chose. A small webhook receiver stands in for the push
gateway; the running notifier is pointed at it through the live config."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from confluent_kafka import Consumer, TopicPartition

from tests.e2e.conftest import Clients, Receiver, eventually

DEAD_LETTERS = "chat.notifications.dead.v1"


async def quiet(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_an_offline_user_gets_one_call_per_burst_and_none_while_online(
    clients: Clients, receiver: Receiver
) -> None:
    alice, bob, chat = await clients.pair()
    # Bob is offline: a burst of three becomes one notification.
    sent = [await alice.send(chat, f"burst {n}") for n in range(3)]

    async def notified(count: int) -> list[dict[str, Any]] | None:
        found = receiver.for_user(bob.user_id)
        return found if len(found) >= count else None

    [call] = await eventually(lambda: notified(1))
    assert call["message_ids"] == [str(m) for m in sent]
    assert (call["chat_id"], call["sender_id"], call["count"]) == (chat, str(alice.user_id), 3)
    assert (call["preview"], call["collapse_key"]) == ("burst 2", chat)
    # Alice wrote them: she is not notified of her own messages.
    await quiet(3.0)
    assert receiver.for_user(alice.user_id) == []
    assert len(receiver.for_user(bob.user_id)) == 1
    # Bob comes online: nothing while his stream lives.
    stream = await clients.subscribe(bob)
    await stream.caught_up()
    for n in range(2):
        await alice.send(chat, f"while online {n}")
    await stream.messages(2)
    await quiet(4.0)
    assert len(receiver.for_user(bob.user_id)) == 1
    # He turns previews off and goes offline: the next burst has no text.
    status, prefs = await bob.call("PUT", "/v1/me/notifications", {"previews": False})
    assert (status, prefs) == (200, {"previews": False})
    stream.call.cancel()
    await quiet(3.0)  # presence keeps a stream's end for 2 s (a reconnect does not blink)
    last = await alice.send(chat, "secret")
    calls = await eventually(lambda: notified(2))
    assert (calls[1]["message_ids"], calls[1]["preview"]) == ([str(last)], None)
    status, problem = await bob.call("PUT", "/v1/me/notifications", {"previews": "no"})
    assert status == 400, problem
    # Added to a group while offline: told so (without a preview: he turned them off).
    status, group = await alice.post(
        "/v1/groups", {"name": "news", "member_ids": [str(bob.user_id)]}
    )
    assert status == 201, group
    calls = await eventually(lambda: notified(3))
    assert (calls[2]["chat_id"], calls[2]["chat_kind"], calls[2]["preview"]) == (
        group["chat_id"],
        "group",
        None,
    )


async def test_failed_calls_are_retried_then_dead_lettered_never_doubled(
    clients: Clients, receiver: Receiver
) -> None:
    alice, bob, chat = await clients.pair()
    carol = await clients.user("ca")
    chat_with_carol = await alice.open_chat(carol)
    # Bob's gateway fails twice (503, then 429), then takes it: one call, tried three times.
    receiver.failures[str(bob.user_id)] = [503, 429]
    # Carol's refuses for good (400): dead-lettered after one try.
    receiver.failures[str(carol.user_id)] = [400] * 10
    with dead_letters() as read_dead:
        await alice.send(chat, "for bob")
        await alice.send(chat_with_carol, "for carol")

        async def bob_notified() -> list[dict[str, Any]] | None:
            return receiver.for_user(bob.user_id) or None

        [call] = await eventually(bob_notified, seconds=30)
        assert receiver.attempts.count(call["notification_id"]) == 3

        async def carol_dead() -> list[dict[str, Any]] | None:
            found = [d for d in read_dead() if d["recipient_id"] == str(carol.user_id)]
            return found or None

        [dead] = await eventually(carol_dead, seconds=30)
        assert dead["preview"] == "for carol"
    await quiet(3.0)
    assert len(receiver.for_user(bob.user_id)) == 1
    assert receiver.for_user(carol.user_id) == []


@contextlib.contextmanager
def dead_letters() -> Any:
    """Read the dead-letter topic from its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": "127.0.0.1:9092",
            "group.id": "test-dead",
            "enable.auto.commit": False,
        }
    )
    low, high = consumer.get_watermark_offsets(TopicPartition(DEAD_LETTERS, 0), timeout=10)
    consumer.assign([TopicPartition(DEAD_LETTERS, 0, high)])
    found: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        for message in consumer.consume(100, 0.5):
            if message.error() is None:
                found.append(json.loads(message.value() or b"{}"))
        return found

    try:
        yield read
    finally:
        consumer.close()
    assert low >= 0


async def test_notification_settings_over_http(clients: Clients) -> None:
    user = await clients.user("ns")
    status, body = await user.get("/v1/me/notifications")
    assert (status, body) == (200, {"previews": True})
    status, problem = await user.call("PUT", "/v1/me/notifications", {"sound": True})
    assert status == 400, problem
    async with (
        aiohttp.ClientSession() as http,
        http.get("http://127.0.0.1:8080/v1/me/notifications") as r,
    ):
        assert r.status == 401
