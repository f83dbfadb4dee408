"""A short run of the end-to-end benchmark: the compiled generator at 100 messages/s for 10 s.

It fails on what the benchmark's accounting finds wrong (a message not acknowledged, a
recipient that did not get it, a duplicate, history missing or repeating it), never on a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bench import e2e
from infra.layout import Layout
from tests.e2e.conftest import BFF, CONFIG, admin_token


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


#: Every scenario of ``python -m bench``, each with arguments that make it a second or two.
SCENARIOS = {
    "e2e-20": ["e2e", "--users", "8", "--senders", "4", "--rate", "20", "--duration", "2",
               "--warmup", "0.5", "--no-floor"],
    "step": ["step", "--users", "8", "--senders", "4", "--rate", "20", "--step", "20",
             "--max-rate", "40", "--duration", "2", "--warmup", "0.5", "--no-floor"],
    "peer-20": ["peer", "--users", "8", "--senders", "4", "--rate", "20", "--duration", "2",
                "--warmup", "0.5", "--no-floor"],
    "floors-50": ["floors", "--rate", "50", "--duration", "2"],
    "idle": ["idle", "--streams", "20"],
    "history": ["history", "--rates", "20", "--duration", "1"],
    "moves": ["moves", "--streams", "10", "--rounds", "1"],
    "revocation": ["revocation", "--users", "4"],
    "ws-idle": ["ws-idle", "--connections", "20"],
    "ws-e2e-10": ["ws-e2e", "--rate", "10", "--duration", "2", "--users", "6"],
    "group8": ["group", "--members", "8", "--online", "0.5", "--messages", "4", "--rate", "4"],
    "presence-death": ["presence-death", "--rounds", "1"],
    "writer-restart": ["writer-restart", "--rounds", "1", "--rate", "10"],
}  # fmt: skip


@pytest.mark.timeout(900)
async def test_every_benchmark_scenario_runs_on_a_fresh_stack(tmp_path: Path) -> None:
    """Each scenario runs as documented (a tiny version of it), writes its result where git
    does not track it, leaves the live config as it found it, and the report reads them all."""
    project = Layout.from_env().project
    tracked = _tracked_state(project)
    limits = await _limits()
    env = {**os.environ, "CHAT_BENCH_RESULTS": str(tmp_path)}
    for name, args in SCENARIOS.items():
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bench", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["scenario"] == name
        assert result["result"], name
    for name in ("e2e-20", "peer-20", "ws-e2e-10"):
        run = json.loads((tmp_path / f"{name}.json").read_text())["result"]
        assert run.get("lost_deliveries", 0) == 0, name
        assert run.get("duplicate_deliveries", 0) == 0, name
    docs = tmp_path / "benchmarks.md"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bench", "report", "--results", str(tmp_path), "--docs", str(docs)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert docs.read_text().strip()
    assert _tracked_state(project) == tracked, "a benchmark changed a tracked file"
    assert await _limits() == limits, "a benchmark left the live limits changed"


def _tracked_state(project: Path) -> str:
    """What git says is changed, and the content of those changes, in the working tree."""
    return (
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        + subprocess.run(
            ["git", "diff"], cwd=project, capture_output=True, text=True, check=True
        ).stdout
    )


async def _limits() -> object:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{CONFIG}/v1/config/limits", headers={"Authorization": f"Bearer {admin_token()}"}
        ) as r,
    ):
        return (await r.json())["value"]
