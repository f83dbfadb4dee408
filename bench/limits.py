"""Looser send limits (or larger groups) for a scenario that needs them, set through the
config service (as an operator would) and put back when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from bench.reach import HERE
from infra.catalog import APPS
from infra.layout import Layout

#: Ops ports of the services that follow the limits section: the messaging servers and the
#: history query service.
FOLLOWERS = tuple(
    a.ops_port for a in APPS if a.module[0] == "messaging" or a.module == ["history", "query"]
)
#: ... and of those that follow the groups section.
MESSAGING = tuple(a.ops_port for a in APPS if a.module[0] == "messaging")
APPLIED_SECONDS = 20.0


def admin_token() -> str:
    return (
        os.environ.get("CHAT_ADMIN_TOKEN")
        or (Layout.from_env().state / "secrets" / "admin").read_text().strip()
    )


@contextlib.asynccontextmanager
async def send_limits(config_url: str, *, rate_per_user: float, burst: int) -> AsyncIterator[None]:
    """At least ``rate_per_user`` sends a second and ``burst`` at once per user while the block
    runs; the section as it was afterwards. Nothing is changed if the limits allow it already."""

    def wanted(before: dict[str, Any]) -> dict[str, Any]:
        return {
            **before,
            "send_rate_per_second": max(before["send_rate_per_second"], rate_per_user),
            "send_burst": max(before["send_burst"], burst),
        }

    async with _changed(config_url, "limits", wanted, FOLLOWERS):
        yield


@contextlib.asynccontextmanager
async def group_size(config_url: str, members: int) -> AsyncIterator[None]:
    """Groups of at least ``members`` while the block runs (``groups.max_members``); the
    section as it was afterwards."""

    def wanted(before: dict[str, Any]) -> dict[str, Any]:
        return {**before, "max_members": max(before["max_members"], members)}

    async with _changed(config_url, "groups", wanted, MESSAGING):
        yield


@contextlib.asynccontextmanager
async def _changed(
    config_url: str,
    section: str,
    wanted: Callable[[dict[str, Any]], dict[str, Any]],
    followers: tuple[int, ...],
) -> AsyncIterator[None]:
    """``section`` as ``wanted`` makes it from what it is while the block runs, applied by
    every follower; as it was afterwards. Nothing is changed if it is as wanted already."""
    headers = {"Authorization": f"Bearer {admin_token()}"}
    url = f"{config_url}/v1/config/{section}"
    async with HERE.http(headers=headers) as http:
        async with http.get(url) as response:
            response.raise_for_status()
            before: dict[str, Any] = (await response.json())["value"]
        value = wanted(before)
        if value == before:
            yield
            return
        try:
            await _put(http, url, value, section, followers)
            yield
        finally:
            await _put(http, url, before, section, followers)


async def _put(
    http: aiohttp.ClientSession,
    url: str,
    value: dict[str, Any],
    section: str,
    followers: tuple[int, ...],
) -> None:
    async with http.put(url, json=value) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"the config service refused the {section}: {body}")
    line = f'chat_config_version{{section="{section}"}} {float(body["version"])}'
    deadline = time.monotonic() + APPLIED_SECONDS
    for port in followers:  # every server applies it before the scenario goes on
        while True:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                if line in await response.text():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service on ops port {port} did not apply the {section}")
            await asyncio.sleep(0.1)
