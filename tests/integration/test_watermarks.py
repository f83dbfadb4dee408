"""Watermark requests in a reconnect storm: shared, but never older than the question."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import Producer

from chatlib.kafka import ensure_topic
from messaging.streams.replay import Watermarks
from tests.integration.conftest import Endpoints


class Counting:
    """The real consumer, with its watermark requests counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests = 0

    def get_watermark_offsets(self, *args: Any) -> Any:
        self.requests += 1
        return self.inner.get_watermark_offsets(*args)

    def close(self) -> None:
        self.inner.close()


async def test_concurrent_requests_share_one_broker_call_and_stay_fresh(
    endpoints: Endpoints, unique: str
) -> None:
    topic = f"{unique}.watermarks"
    await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, 1, 1, {})
    producer = Producer(endpoints.kafka.config())
    for n in range(3):
        producer.produce(topic, value=f"v{n}".encode(), partition=0)
    producer.flush(10)
    watermarks = Watermarks(endpoints.kafka, topic)
    counting = Counting(watermarks._reader.get())
    watermarks._reader._consumer = counting  # type: ignore[assignment]
    try:
        answers = await asyncio.gather(*(watermarks.get(0) for _ in range(200)))
        assert set(answers) == {(0, 3)}
        assert counting.requests <= 2  # one, or two if the first was sent before all asked

        producer.produce(topic, value=b"v3", partition=0)
        producer.flush(10)
        assert await watermarks.get(0) == (0, 4)  # asked after the write: sees it
    finally:
        watermarks.close()
