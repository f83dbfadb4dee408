"""A record produced with confluent-kafka comes back from a consumer with its headers intact."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

# Re-exported by confluent_kafka.admin at run time; the stubs declare it in cimpl only.
from confluent_kafka.cimpl import NewTopic

from tests.integration.conftest import Endpoints


@pytest.fixture
def topic(endpoints: Endpoints, unique: str) -> Iterator[str]:
    admin = AdminClient(endpoints.kafka.config())
    name = f"{unique}.deliveries"
    for future in admin.create_topics(
        [NewTopic(name, num_partitions=3, replication_factor=1)]
    ).values():
        future.result(timeout=30)
    yield name
    for future in admin.delete_topics([name]).values():
        future.result(timeout=30)


def test_a_record_round_trips_with_key_value_and_headers(endpoints: Endpoints, topic: str) -> None:
    headers: list[tuple[str, str | bytes | None]] = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("content-type", b"application/x-protobuf"),
        ("binary", bytes(range(256))),
        ("content-type", b"repeated keys keep their order"),
    ]
    producer = Producer(
        {
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    delivered: list[Message] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        delivered.append(message)

    producer.produce(
        topic,
        key=b"user-42",
        value=b"hello \xf0\x9f\x91\x8b",
        headers=headers,
        on_delivery=on_delivery,
    )
    assert producer.flush(30) == 0
    assert len(delivered) == 1
    partition, offset = delivered[0].partition(), delivered[0].offset()

    consumer = Consumer(
        {
            "bootstrap.servers": endpoints.kafka_bootstrap,
            "group.id": f"{topic}.reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        received = _poll_one(consumer, seconds=60)
        consumer.commit(message=received, asynchronous=False)
    finally:
        consumer.close()

    assert (received.partition(), received.offset()) == (partition, offset)
    assert received.key() == b"user-42"
    assert received.value() == b"hello \xf0\x9f\x91\x8b"
    assert received.headers() == headers


def _poll_one(consumer: Consumer, *, seconds: float) -> Message:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        error = message.error()
        assert error is None, error
        return message
    pytest.fail(f"no record arrived within {seconds}s")
