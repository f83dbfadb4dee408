"""Every port a client of the cluster reaches speaks TLS with a certificate from the cluster's
own CA (``.infra/secrets/tls/ca.pem``): the balancer's HTTPS and WebSocket port, the admin
port, and each messaging server's and history query process's gRPC port. A client that trusts
the CA is served; one that trusts only the system's roots, or speaks plaintext, is not."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from selenium.webdriver.common.by import By

from chatlib import channels
from chatlib.settings import Tls
from clients.stream import dial
from infra.catalog import CLUSTER_HISTORY_ADDRESS
from infra.layout import Layout
from protos.chat.v1 import history_pb2, history_pb2_grpc, messaging_pb2, messaging_pb2_grpc
from tests.browser import Page, chromium, trusting
from tests.cluster.conftest import APPS
from tests.e2e.conftest import BFF, CA, CONFIG, PASSWORD, Clients, eventually

PROJECT = Layout.from_env().project
MESSAGING = [
    f"127.0.0.1:{app.env['CHAT_MESSAGING_PORT']}"
    for app in APPS
    if "CHAT_MESSAGING_PORT" in app.env
]
HISTORY = CLUSTER_HISTORY_ADDRESS.removeprefix("ipv4:").split(",")


def _ca_file() -> str:
    assert CA is not None, "the cluster runs without its CA"
    return CA


def _ca() -> bytes:
    return Path(_ca_file()).read_bytes()


async def test_the_balancer_speaks_https_only_and_is_verified_against_the_ca() -> None:
    assert BFF.startswith("https://")
    assert CONFIG.startswith("https://")
    verified = ssl.create_default_context(cafile=CA)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=verified)) as http:
        async with http.get(f"{BFF}/") as page:
            assert page.status == 200
            assert "text/html" in page.headers["Content-Type"]
        async with http.get(f"{CONFIG}/v1/config/limits") as config:
            assert config.status == 401  # served over TLS; the token is what is missing
    # The system's roots do not know the cluster's CA: the certificate does not verify.
    async with aiohttp.ClientSession() as http:
        for url in (BFF, CONFIG):
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(f"{url}/")
    # Plaintext HTTP on the TLS port gets no answer from a BFF.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(BFF.replace("https://", "http://", 1) + "/v1/openapi.json") as r:
                await r.read()


@pytest.mark.timeout(300)
async def test_the_web_client_runs_in_a_browser_that_trusts_the_ca(
    clients: Clients, tmp_path: Path
) -> None:
    """A person who imported the CA uses the web client over HTTPS and WSS through the
    balancer; a browser that did not import it gets no page."""
    user, peer = await clients.user("web"), await clients.user("peer")
    trusted = chromium(1280, 800, home=trusting(Path(_ca_file()), tmp_path / "imported"))
    stranger = chromium(1280, 800, home=tmp_path / "stranger")
    try:
        page = Page(trusted, BFF)
        await asyncio.to_thread(page.log_in, user.username)
        await asyncio.to_thread(page.open_chat_with, peer.username)
        await asyncio.to_thread(page.say, "typed over https")
        chat = await peer.open_chat(user)

        async def stored() -> bool:
            return [m["body"] for m in await peer.history(chat)] == ["typed over https"]

        await eventually(stored)
        await peer.send(chat, "pushed over wss")
        await asyncio.to_thread(page.wait_for, ["typed over https", "pushed over wss"])

        await asyncio.to_thread(stranger.get, f"{BFF}/")
        assert not stranger.find_elements(By.ID, "username"), "a page without verification"
    finally:
        trusted.quit()
        stranger.quit()


async def test_a_web_page_of_the_cluster_opens_its_stream_over_wss(clients: Clients) -> None:
    """The page's Origin is the balancer's https address; the BFF behind it sees plaintext
    and must still take it as its own (X-Forwarded-Proto)."""
    user = await clients.user("page")
    socket_url = BFF.replace("https://", "wss://", 1) + "/v1/stream/ws"
    async with clients.http.ws_connect(socket_url, headers={"Origin": BFF}) as ws:
        await ws.send_json({"type": "hello", "access_token": user.token, "cursor": ""})
        async with asyncio.timeout(15):
            while True:
                frame = await ws.receive()
                assert frame.type == aiohttp.WSMsgType.TEXT, frame
                event = json.loads(frame.data)
                assert event["type"] != "error", event
                if event["type"] == "caught_up":
                    break


@pytest.mark.parametrize("address", MESSAGING)
async def test_each_messaging_server_speaks_tls_only(address: str) -> None:
    def subscribe(
        channel: grpc.aio.Channel,
    ) -> grpc.aio.UnaryStreamCall[messaging_pb2.SubscribeRequest, messaging_pb2.ClientEvent]:
        stub = messaging_pb2_grpc.MessagingServiceStub(channel)
        return stub.Subscribe(messaging_pb2.SubscribeRequest(), timeout=10)

    # Trusting the CA: the server answers (no token, so it refuses the call itself).
    async with dial(address, tls=True, ca=_ca()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as answered:
            async for _ in subscribe(channel):
                pass
        assert answered.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for channel in (dial(address, tls=True), dial(address, tls=False)):
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in subscribe(channel):
                    pass
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_history_query_processes_speak_tls_to_the_services() -> None:
    request = history_pb2.FindUserRequest(user_id=1)
    async with channels.to_service(CLUSTER_HISTORY_ADDRESS, Tls(ca=_ca())) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as answered:
            await history_pb2_grpc.HistoryServiceStub(channel).FindUser(request, timeout=10)
        assert answered.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for address in HISTORY:
        async with dial(address, tls=False) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await history_pb2_grpc.HistoryServiceStub(plaintext).FindUser(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def _terminal(*args: str, typed: str, elsewhere: Path | None = None) -> str:
    """The terminal client's output (``--bff`` the balancer, the CA found as on this machine;
    ``elsewhere``: as on a machine that never ran the cluster, whose state folder that is)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CHAT_TLS_CA", "CHAT_BFF_URL")}
    if elsewhere is not None:
        env["CHAT_INFRA_STATE"] = str(elsewhere)
    done = subprocess.run(
        [sys.executable, "-m", "clients.terminal", "--bff", BFF, *args],
        cwd=PROJECT,
        input=typed,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "CHAT_PASSWORD": PASSWORD},
    )
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


async def test_the_terminal_client_verifies_the_cluster(clients: Clients, tmp_path: Path) -> None:
    user = await clients.user("term")
    peer = await clients.user("peer")
    chat = await user.open_chat(peer)
    await user.send(chat, "over HTTPS")

    # Acknowledged means in the log; history writes it a moment later.
    async def stored(*bodies: str) -> bool:
        return [m["body"] for m in await peer.history(chat)] == list(bodies)

    await eventually(lambda: stored("over HTTPS"))
    # It logs in and shows the chat over HTTPS, then sends a line over gRPC and TLS.
    shown = await asyncio.to_thread(
        _terminal, "chat", user.username, "--with", peer.username, typed="over gRPC\n"
    )
    assert shown.startswith("exit 0\n"), shown
    assert f"{user.username}: over HTTPS" in shown, shown
    await eventually(lambda: stored("over gRPC", "over HTTPS"))
    # Where the cluster's CA is not known, it refuses the balancer's certificate and says so.
    refused = await asyncio.to_thread(_terminal, "register", "nobody", typed="", elsewhere=tmp_path)
    assert refused.startswith("exit 1\n"), refused
    assert "certificate did not verify" in refused, refused
