"""Running a service until SIGTERM or SIGINT, then shutting down in reverse order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

logger = logging.getLogger(__name__)


def run(main: Callable[[AsyncExitStack, asyncio.Event], Awaitable[None]]) -> None:
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
