"""Attachments: files uploaded to and downloaded from the object store the way clients do it,
with the CPU our processes spend (the BFF and messaging presigning, the send) set against the
store's (SeaweedFS moving the bytes)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from typing import Any

from bench import cpu
from bench.population import Member
from bench.reach import HERE
from bench.stats import summary

STORE = "seaweedfs"


async def _timed(count: int, parallel: int, one: Any) -> tuple[list[float], float, float]:
    """Run ``one(n)`` for n < count, ``parallel`` at once: per-call ms, start, end."""
    gate = asyncio.Semaphore(parallel)
    taken: list[float] = []

    async def run(n: int) -> None:
        async with gate:
            began = time.perf_counter()
            await one(n)
            taken.append((time.perf_counter() - began) * 1000)

    start = time.time()
    await asyncio.gather(*(run(n) for n in range(count)))
    return taken, start, time.time()


#: Processes of the stack that are not ours: the store's CPU is reported on its own.
BACKING = ("cassandra", "kafka", "redis", "jaeger")


def _split(usage: dict[str, Any]) -> dict[str, Any]:
    """The processes' CPU seconds in a window: the object store's, our Python services'
    (the BFF, messaging, history...), the backing stores' (Cassandra holds the rows, and the
    claim is a lightweight transaction), the client's."""
    seconds = {name: p["cores"] * usage["window_s"] for name, p in usage["processes"].items()}
    backing = sum(v for k, v in seconds.items() if k in BACKING)
    ours = sum(v for k, v in seconds.items() if k not in (STORE, "bench", *BACKING))
    return {
        "window_s": usage["window_s"],
        "store_cpu_s": round(seconds.get(STORE, 0.0), 3),
        "our_services_cpu_s": round(ours, 3),
        "backing_cpu_s": round(backing, 3),
        "client_cpu_s": round(seconds.get("bench", 0.0), 3),
        "processes": usage["processes"],
    }


async def transfer(
    bff: str, sender: Member, receiver: Member, chat_id: str, count: int, size: int, parallel: int
) -> dict[str, Any]:
    """Upload ``count`` files of ``size`` random bytes through presigned URLs and send each in a
    message, then download each as the other member (link, then the bytes), checking them."""
    pids = {**cpu.stack_pids(), "bench": os.getpid()}
    files = [os.urandom(size) for _ in range(count)]
    sent: dict[int, tuple[str, str]] = {}

    async with HERE.http() as http:
        mine = {"Authorization": f"Bearer {sender.token}"}
        theirs = {"Authorization": f"Bearer {receiver.token}"}

        async def upload(n: int) -> None:
            data = files[n]
            declared = {
                "name": f"file{n}.bin",
                "size": size,
                "content_type": "application/octet-stream",
            }
            async with http.post(
                f"{bff}/v1/chats/{chat_id}/attachments", json=declared, headers=mine
            ) as response:
                made = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"upload {n}: {response.status} {made}")
            async with http.put(made["url"], data=data, headers=made["headers"]) as response:
                if response.status != 200:
                    raise RuntimeError(f"PUT {n}: {response.status} {await response.text()}")
            message = {
                "client_message_id": uuid.uuid4().hex,
                "body": f"file {n}",
                "attachments": [
                    {
                        "attachment_id": made["attachment_id"],
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                ],
            }
            async with http.post(
                f"{bff}/v1/chats/{chat_id}/messages", json=message, headers=mine
            ) as response:
                answer = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"send {n}: {response.status} {answer}")
            sent[n] = (answer["message_id"], made["attachment_id"])

        async def download(n: int) -> None:
            message_id, attachment_id = sent[n]
            path = f"{bff}/v1/chats/{chat_id}/messages/{message_id}/attachments/{attachment_id}"
            while True:
                async with http.get(path, headers=theirs) as response:
                    link = await response.json()
                    if response.status == 503:
                        await asyncio.sleep(0.1)
                        continue
                    if response.status != 200:
                        raise RuntimeError(f"link {n}: {response.status} {link}")
                    break
            async with http.get(link["url"]) as response:
                data = await response.read()
            if data != files[n]:
                raise RuntimeError(f"file {n} came back different")

        with cpu.Sampler(pids, interval=0.2) as sampler:
            up_ms, up_start, up_end = await _timed(count, parallel, upload)
            await asyncio.sleep(0.5)
            down_ms, down_start, down_end = await _timed(count, parallel, download)
    phases = {}
    for name, taken, start, end in (
        ("upload", up_ms, up_start, up_end),
        ("download", down_ms, down_start, down_end),
    ):
        first, last = sampler.window(start - 0.25, end + 0.25)
        usage = cpu.usage(first, last, ("bench",), count)
        phases[name] = {
            "wall_s": round(end - start, 2),
            "mib_per_s": round(count * size / 2**20 / (end - start), 1),
            "per_file_ms": summary(taken),
            **_split(usage),
        }
    return {"files": count, "bytes_each": size, "parallel": parallel, "phases": phases}
