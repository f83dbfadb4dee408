"""Open-loop load: operations start on a fixed schedule, whether or not earlier ones finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any


async def at_rate(
    total: int, rate: float, operation: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Start ``operation(i)`` at ``i / rate`` seconds for i < total, then wait for all of them.

    Open loop, so a slow system shows up as latency instead of silently lowering the rate.
    """
    start = time.monotonic() + 0.2
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(operation(i)))
    await asyncio.gather(*tasks)
