"""Search within one chat of many messages: query latency through the BFF (what a client
waits for), for words of every frequency.

The chat is filled straight through the history writer's own code (``HistoryStore.persist``
with the deliveries it would have read from Kafka), so rows and index entries are exactly
what a chat that long would hold, in seconds rather than the hours 100,000 sends would take
at one user's send rate. Two chats: one whose messages all fall in the last day (one bucket),
and one spread over the last 300 days (30 buckets, a search walks them newest first).
"""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import quote

from bench.reach import HERE
from chatlib import cassandra
from chatlib.ids import EPOCH_MS, TIME_SHIFT
from chatlib.settings import Common
from history.store import HistoryStore
from protos.chat.v1 import envelope_pb2

DAY_MS = 24 * 3600 * 1000
BATCH = 500
#: Ordinary words, drawn with a Zipf-like skew (the n-th is about 1/n as frequent as the first).
VOCABULARY = [f"word{n}" for n in range(5000)]
#: Words planted at fixed rates, so each query's number of matches is known.
PLANTED = {"common": 0.10, "frequent": 0.01, "rare": 0.0001}


def _body(rng: random.Random, weights: list[float]) -> str:
    words = rng.choices(VOCABULARY, weights, k=rng.randint(4, 16))
    for word, share in PLANTED.items():
        if rng.random() < share:
            words.insert(rng.randrange(len(words) + 1), word)
    return " ".join(words)


async def fill(
    infra: Common, chat_id: str, sender: int, recipient: int, messages: int, days: float
) -> dict[str, int]:
    """Write ``messages`` messages of ``chat_id`` spread evenly over the last ``days``; the
    number of messages that hold each planted word."""
    rng = random.Random(chat_id)  # noqa: S311 - made-up text, repeatable
    weights = [1 / (n + 1) for n in range(len(VOCABULARY))]
    cluster, session = cassandra.connect(infra.cassandra)
    store = HistoryStore(cassandra.AsyncSession(session, infra.keyspace))
    counts = dict.fromkeys(PLANTED, 0)
    now = int(time.time() * 1000)
    start = now - int(days * DAY_MS)
    step = max((now - start) // messages, 1)
    try:
        for first in range(0, messages, BATCH):
            batch = []
            for n in range(first, min(first + BATCH, messages)):
                at = start + n * step
                message_id = ((at - EPOCH_MS) << TIME_SHIFT) | (n & 0x3FFFFF)
                body = _body(rng, weights)
                for word in PLANTED:
                    counts[word] += f" {word} " in f" {body} "
                batch.append(
                    envelope_pb2.Delivery(
                        recipient_id=recipient,
                        message_id=message_id,
                        chat_id=chat_id,
                        sender_id=sender,
                        body=body,
                        client_message_id=f"s{n}",
                        created_at_ms=at,
                        kind="direct",
                        primary=True,
                    )
                )
            await store.persist(batch)
    finally:
        cluster.shutdown()
    return counts


async def latencies(
    bff: str, token: str, chat_id: str, query: str, rounds: int, limit: int
) -> dict[str, Any]:
    """``rounds`` searches one after another (the first page each), in milliseconds."""
    taken: list[float] = []
    found = 0
    async with HERE.http() as http:
        url = f"{bff}/v1/chats/{chat_id}/search?q={quote(query)}&limit={limit}"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(rounds):
            began = time.perf_counter()
            async with http.get(url, headers=headers) as response:
                page = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"search {query!r}: {response.status} {page}")
            taken.append((time.perf_counter() - began) * 1000)
            found = len(page["messages"])
    return {"query": query, "found_on_first_page": found, "ms": taken}
