"""Posting a notification to the configured webhook, with retries.

The body is what a push gateway (FCM, APNs, or a relay in front of them) needs: who to
notify, the chat, who wrote, a preview unless the recipient turned previews off, and a
``collapse_key`` (the chat) so the device shows one entry per chat. ``notification_id`` is
the same on every try of one notification: a receiver that saw it already can drop it.

A 2xx answer is delivered; 408, 429 and 5xx answers and connection failures are tried again
after 0.5 s, 1 s, 2 s... (at most ``MAX_PAUSE``, or the ``Retry-After`` the receiver gave);
any other answer, or running out of tries, is final: the notification goes to the dead
letters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0
TIMEOUT_SECONDS = 5.0
RETRIED = {408, 429}


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str = ""
    #: Notifications were switched off (no webhook) before it could be delivered.
    off: bool = False


class Webhook:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(
        self, url: Callable[[], str], body: dict[str, Any], max_attempts: Callable[[], int]
    ) -> Outcome:
        """Try until delivered, refused for good, or out of tries (read live each time)."""
        attempt = 0
        pause = FIRST_PAUSE
        error = ""
        while True:
            attempt += 1
            target = url()
            if not target:
                return Outcome(False, attempt - 1, "notifications were switched off", off=True)
            retry_after: float | None = None
            try:
                async with self._session.post(
                    target, json=body, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
                ) as answer:
                    if 200 <= answer.status < 300:
                        return Outcome(True, attempt)
                    error = f"the webhook answered {answer.status}"
                    if answer.status not in RETRIED and answer.status < 500:
                        return Outcome(False, attempt, error)
                    retry_after = _seconds(answer.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"the webhook could not be reached: {type(exc).__name__}: {exc}"
            if attempt >= max_attempts():
                return Outcome(False, attempt, error)
            logger.info("notification %s: %s; trying again", body.get("notification_id"), error)
            await asyncio.sleep(min(MAX_PAUSE, retry_after if retry_after else pause))
            pause = min(MAX_PAUSE, pause * 2)


def _seconds(raw: str | None) -> float | None:
    if raw is None or not raw.strip().isdigit():
        return None
    return float(raw.strip())
