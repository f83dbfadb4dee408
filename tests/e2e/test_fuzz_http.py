"""The HTTP API against requests generated from its own OpenAPI document (schemathesis).

Every check schemathesis has runs: no 5xx, responses (status, headers, content type, body)
as the document describes them, schema-valid requests accepted, schema-invalid ones refused,
405 with a matching Allow, authentication enforced. The seed and the number of examples are
fixed, so a run is repeatable and bounded; a failure prints the curl line that reproduces it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import BFF, Clients

SEED = 20261123
EXAMPLES = 50
GENERATOR_ERROR = "schemathesis/specs/openapi/coverage/"


def _run(token: str, report: Path, *selection: str, examples: int = EXAMPLES) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{BFF}/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(examples),
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        *selection,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=report, check=False
    )
    output = done.stdout[-20_000:] + done.stderr[-5_000:]
    (junit,) = report.glob("junit-*.xml")
    cases = ElementTree.parse(junit).getroot().iter("testcase")  # noqa: S314 - our own report
    failures, errors, ran = [], [], 0
    for case in cases:
        ran += 1
        failures += [f"{case.get('name')}: {f.text}" for f in case.iter("failure")]
        errors += [
            f"{case.get('name')}: {e.text}"
            for e in case.iter("error")
            # Schemathesis failing to build a request (a generator bug; no request was sent)
            # says nothing about the API; anything else does.
            if GENERATOR_ERROR not in (e.text or "")
        ]
    junit.unlink()
    assert not failures, output
    assert not errors, "\n".join(errors)[:20_000]
    assert ran > 0, output


@pytest.mark.timeout(900)
async def test_the_http_api_holds_to_its_document_under_generated_requests(
    clients: Clients, tmp_path: Path
) -> None:
    user = await clients.user("fuzz")
    # Logging out ends the token the rest of the run uses, so the two DELETE routes get a
    # run (and a session) of their own.
    await asyncio.to_thread(_run, user.token, tmp_path, "--exclude-method", "DELETE")
    other = await clients.user("fuzzdel")
    await asyncio.to_thread(_run, other.token, tmp_path, "--include-method", "DELETE", examples=10)


@pytest.fixture(autouse=True)
async def _forget_the_fuzzers_failed_logins() -> AsyncIterator[None]:
    """The fuzzer is a client that fails many logins from this address: the budget it spent
    would refuse the next tests' logins for a few seconds, so it is given back."""
    yield
    client = aioredis.Redis.from_url(os.environ.get("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        async for key in client.scan_iter("chat:attempts:login-failures-per-address:*"):
            await client.delete(key)
    finally:
        await client.aclose()
