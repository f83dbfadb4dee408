"""The fan-out against real Kafka while the rate crosses its batching line back and forth: it
moves its partitions between its two consumers (one fetching at the first byte, one waiting to
batch) and a stream gets every record once, in order, through every move; the send path's
producer likewise switches between its two producers without losing or reordering a send."""

from __future__ import annotations

import asyncio
import contextlib

from confluent_kafka import Consumer

from chatlib import deliveries
from chatlib.kafka import AsyncProducer, Record, ensure_topic
from chatlib.pace import Pace
from messaging.streams.fanout import FanOut
from messaging.streams.recent import RecentDeliveries
from messaging.streams.registry import LiveStream, StreamRegistry
from messaging.streams.replay import Watermarks
from tests.integration.conftest import Endpoints

USER = 4242
PARTITIONS = 2
#: Records a second above which both batch: crossed by the bursts below, not by the trickles.
BUSY = 100


async def test_every_record_reaches_the_stream_once_in_order_across_switches(
    endpoints: Endpoints, unique: str
) -> None:
    topic = f"{unique}.deliveries"
    await asyncio.to_thread(ensure_topic, endpoints.kafka, topic, PARTITIONS, 1, {})
    settings = {"group.id": f"{unique}-fanout", "enable.auto.commit": False}
    batching = Consumer(
        endpoints.kafka.config(**settings, **{"fetch.min.bytes": 65536, "fetch.wait.max.ms": 10})
    )
    quick = Consumer(endpoints.kafka.config(**settings, **{"fetch.min.bytes": 1}))
    registry = StreamRegistry()
    stream = LiveStream(USER, 0, capacity=100_000)
    registry.add(stream)
    watermarks = Watermarks(endpoints.kafka, topic)
    fanout = FanOut(
        batching,
        registry,
        RecentDeliveries(2**20),
        watermarks,
        topic,
        lambda partition: True,
        quick=quick,
        pace=Pace(BUSY),
    )
    fanout.follow(frozenset(range(PARTITIONS)), lambda partition: None)  # type: ignore[arg-type,return-value]
    stop = asyncio.Event()
    loop = asyncio.create_task(fanout.run(stop))
    producer = AsyncProducer(endpoints.kafka.config(), pace=Pace(BUSY))
    used: set[bool] = set()
    sent: list[int] = []
    try:
        await asyncio.wait_for(fanout.settled(), 20)
        entry = deliveries.Delivery(chat_id="d:1:4242", kind="direct", sender_id=1, body="x")
        message_id = 1000
        # Trickles and bursts: the rate crosses the line both ways, twice.
        for count, pause in ((20, 0.05), (600, 0.0), (20, 0.1)) * 2:
            for _ in range(count):
                message_id += 1
                [copy] = deliveries.encode(entry, message_id, [USER])
                await producer.send([Record(topic, copy.key, copy.value, 0)])
                sent.append(message_id)
                if pause:
                    await asyncio.sleep(pause)
                elif message_id % 50 == 0:
                    await asyncio.sleep(0)
            used.add(fanout.consumer is quick)

        for _ in range(600):  # 30 s at most
            if len(stream.queue) >= len(sent):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop, 10)
        producer.close()
        watermarks.close()
        batching.close()
        quick.close()
    received = [event.message_id for event in stream.queue]
    assert received == sent
    assert used == {True, False}, "the fan-out never changed consumers"
