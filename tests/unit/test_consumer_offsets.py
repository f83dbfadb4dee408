"""The consumer loop's watch on offsets: a partition whose records jump forward within one
assignment is logged as an error (records were skipped); a new assignment starts afresh."""

from __future__ import annotations

import logging
import time
from typing import cast

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from chatlib.consumer_loop import REJOIN_SECONDS, ConsumerLoop

TOPIC = "t"


class _Record:
    def __init__(self, partition: int, offset: int) -> None:
        self._at = (partition, offset)

    def partition(self) -> int:
        return self._at[0]

    def offset(self) -> int:
        return self._at[1]


class _Loop(ConsumerLoop):
    async def handle(self, records: list[Message]) -> None:
        pass

    def committable(self) -> dict[int, int]:
        return {}


def _records(*at: tuple[int, int]) -> list[Message]:
    return [cast(Message, _Record(p, o)) for p, o in at]


def _loop() -> _Loop:
    return _Loop(cast(Consumer, object()), TOPIC, "g", batch=10, poll_seconds=0.1, commit_seconds=0)


def _skips(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_records_that_follow_one_another_raise_nothing(caplog: pytest.LogCaptureFixture) -> None:
    loop = _loop()
    loop._follow_offsets(_records((0, 5), (1, 9), (0, 6)))
    loop._follow_offsets(_records((0, 7), (1, 10)))
    assert _skips(caplog) == []


def test_a_forward_jump_is_logged_as_skipped_records(caplog: pytest.LogCaptureFixture) -> None:
    loop = _loop()
    loop._follow_offsets(_records((3, 100), (3, 101)))
    loop._follow_offsets(_records((3, 117)))
    assert _skips(caplog) == ["t[3]: records 102..116 were skipped (the consumer jumped past them)"]


def test_a_partition_assigned_again_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    loop = _loop()
    loop._follow_offsets(_records((2, 10)))
    # Revoked, another consumer read on, then assigned here again from its committed offset.
    loop._on_revoke(cast(Consumer, None), [TopicPartition(TOPIC, 2)])
    loop._on_assign(cast(Consumer, None), [TopicPartition(TOPIC, 2)])
    loop._follow_offsets(_records((2, 50)))
    # Given up by hand (a fan-out's move), then taken again further on.
    loop.forget({2})
    loop._follow_offsets(_records((2, 80)))
    assert _skips(caplog) == []


def test_revoked_partitions_reach_the_hook() -> None:
    gone: list[set[int]] = []

    class Hooked(_Loop):
        def revoked(self, partitions: set[int]) -> None:
            gone.append(partitions)

    loop = Hooked(
        cast(Consumer, object()), TOPIC, "g", batch=10, poll_seconds=0.1, commit_seconds=0
    )
    loop._on_revoke(cast(Consumer, None), [TopicPartition(TOPIC, 1), TopicPartition(TOPIC, 4)])
    loop._on_lost(cast(Consumer, None), [TopicPartition(TOPIC, 7)])
    assert gone == [{1, 4}, {7}]


def test_a_consumer_that_lost_its_partitions_is_stranded_until_assigned_again() -> None:
    """The clock ``run`` replaces a consumer by: it starts when the group goes on without the
    consumer, and stops at the next assignment, even an empty one."""
    loop = _loop()
    assert loop.stranded_for() == 0.0
    loop._on_lost(cast(Consumer, object()), [TopicPartition(TOPIC, 3)])
    lost_at = time.monotonic()
    assert 0.0 <= loop.stranded_for() < 1.0
    assert loop.stranded_for(lost_at + REJOIN_SECONDS + 1) > REJOIN_SECONDS
    loop._on_assign(cast(Consumer, object()), [])
    assert loop.stranded_for(lost_at + REJOIN_SECONDS + 1) == 0.0
    # A revocation in an ordinary rebalance is not a loss: no clock.
    loop._on_revoke(cast(Consumer, object()), [TopicPartition(TOPIC, 3)])
    assert loop.stranded_for() == 0.0
