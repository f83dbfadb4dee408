"""Running a service until SIGTERM or SIGINT, then shutting down in reverse order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from chatlib import telemetry
from chatlib.settings import Common

logger = logging.getLogger(__name__)

Main = Callable[[AsyncExitStack, asyncio.Event], Awaitable[None]]


def serve(service: str, common: Common, main: Main, *, instance: str = "") -> int:
    """A service process: telemetry first, then ``main`` until SIGTERM, then flush spans."""
    shutdown = telemetry.setup(service, common, instance=instance)
    try:
        run(main)
    finally:
        shutdown()
    return 0


def run(main: Main) -> None:
    """``main`` builds the object graph on the exit stack, then waits for ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with AsyncExitStack() as stack:
            await main(stack, stop)
        logger.info("stopped cleanly")

    asyncio.run(runner())
