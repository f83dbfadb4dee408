"""A short run of the end-to-end benchmark: the compiled generator at 100 messages/s for 10 s.

It fails on what the benchmark's accounting finds wrong (a message not acknowledged, a
recipient that did not get it, a duplicate, history missing or repeating it), never on a time.
"""

from __future__ import annotations

import asyncio

import pytest

from bench import e2e
from tests.e2e.conftest import BFF


@pytest.mark.timeout(180)
async def test_a_short_benchmark_run_loses_and_duplicates_nothing() -> None:
    plan = await e2e.build_plan(
        BFF, users=40, senders=20, rate=100, duration=8, body_bytes=100, warmup=2
    )
    result = await asyncio.to_thread(e2e.run, plan, {})
    sends = result.pop("_sends")
    assert result["send_errors"] == {}
    assert result["generator_overloaded"] == 0
    assert (result["acked"], result["attempted"]) == (1000, 1000)
    assert result["lost_deliveries"] == 0
    assert result["duplicate_deliveries"] == 0

    async def persisted() -> dict[str, int]:
        return await e2e.check_persisted(BFF, plan, sends)

    found = await persisted()
    for _ in range(30):  # the history writer persists asynchronously
        if found["persisted_missing"] == 0:
            break
        await asyncio.sleep(1)
        found = await persisted()
    assert found == {"persisted_missing": 0, "persisted_duplicates": 0}
