"""Running a service until SIGTERM or SIGINT, then shutting down in reverse order."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import uvloop

from chatlib import telemetry
from chatlib.settings import Common

logger = logging.getLogger(__name__)

Main = Callable[[AsyncExitStack, asyncio.Event], Awaitable[None]]


def serve(service: str, common: Common, main: Main, *, instance: str = "") -> int:
    """A service process: telemetry first, then ``main`` until SIGTERM, then flush spans."""
    shutdown = telemetry.setup(service, common, instance=instance)
    # The Kafka poller, fetch and gRPC completion threads each need the GIL to hand a result
    # to the event loop; Python lets a busy thread keep it up to 5 ms by default, which a
    # request pays for at every such hop.
    sys.setswitchinterval(common.gil_switch_ms / 1000)
    try:
        run(main, event_loop=common.event_loop, gc_threshold=common.gc_threshold)
    finally:
        shutdown()
    return 0


def run(main: Main, *, event_loop: str = "asyncio", gc_threshold: int = 0) -> None:
    """``main`` builds the object graph on the exit stack, then waits for ``stop``.

    ``event_loop`` "uvloop" runs it on uvloop. ``gc_threshold``, when set, is the cyclic
    garbage collector's first-generation threshold from the moment ``main`` has started
    serving: a service allocates many short-lived objects per request that reference
    counting frees, and the collector's default of 700 allocations would scan the young
    generation hundreds of times a second for almost nothing. What exists at start-up is
    frozen out of the collector's scans.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if gc_threshold:
            loop.call_later(2.0, _tune_gc, gc_threshold)
        async with AsyncExitStack() as stack:
            await main(stack, stop)
        logger.info("stopped cleanly")

    if event_loop == "uvloop":
        uvloop.run(runner())
    else:
        asyncio.run(runner())


def _tune_gc(threshold: int) -> None:
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)
