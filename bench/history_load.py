"""History pages at rising rates, straight at the history query service over gRPC."""

from __future__ import annotations

import time
from typing import Any

import grpc

from bench.pacing import at_rate
from bench.stats import summary
from protos.chat.v1 import history_pb2, history_pb2_grpc


async def pages(
    address: str, token: str, chat_id: str, rate: float, duration: float, limit: int = 50
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = history_pb2_grpc.HistoryServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        request = history_pb2.GetHistoryRequest(chat_id=chat_id, limit=limit)

        async def one(_: int) -> None:
            nonlocal errors
            began = time.monotonic()
            try:
                reply = await stub.GetHistory(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError:
                errors += 1
                return
            if len(reply.messages) != limit:
                errors += 1
            latencies.append((time.monotonic() - began) * 1000)

        await at_rate(int(rate * duration), rate, one)
    return {
        "rate": rate,
        "duration_s": duration,
        "limit": limit,
        "errors": errors,
        "page_ms": summary(latencies),
    }
