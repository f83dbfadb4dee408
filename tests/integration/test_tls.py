"""TLS on our gRPC hops, with certificates ``./dev`` makes (``infra/tls.py``, Debian's
openssl): a caller that trusts the CA is served, over one address or a list of them; a caller
that trusts another CA, or speaks plaintext, is not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from chatlib import channels
from chatlib.settings import ConfigError, Env, Tls, tls
from clients.stream import dial
from infra import tls as certificates
from infra.layout import Layout


def _made(folder: Path) -> certificates.Files:
    layout = Layout(project=Path.cwd(), state=folder, cache=folder / "cache")
    return certificates.ensure(layout)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> certificates.Files:
    return _made(tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> certificates.Files:
    """Another deployment's CA and certificate."""
    return _made(tmp_path_factory.mktemp("theirs"))


def _tls(files: certificates.Files) -> Tls:
    return Tls(files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes())


def _server(name: bytes) -> grpc.aio.Server:
    async def answer(request: bytes, context: object) -> bytes:
        return name

    server = grpc.aio.server(options=channels.SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Tls",
                {
                    "Who": grpc.unary_unary_rpc_method_handler(
                        answer, request_deserializer=bytes, response_serializer=bytes
                    )
                },
            ),
        )
    )
    return server


@pytest.fixture
async def two_servers(files: certificates.Files) -> AsyncIterator[list[int]]:
    servers = [_server(b"one"), _server(b"two")]
    ports = [channels.listen(server, "127.0.0.1:0", _tls(files)) for server in servers]
    for server in servers:
        await server.start()
    yield ports
    for server in servers:
        await server.stop(None)


async def _who(channel: grpc.aio.Channel) -> bytes:
    who = channel.unary_unary(
        "/test.Tls/Who", request_serializer=bytes, response_deserializer=bytes
    )
    try:
        return bytes(await who(b"?", timeout=10))
    finally:
        await channel.close()


async def test_a_service_channel_to_several_processes_verifies_each(
    files: certificates.Files, two_servers: list[int]
) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in two_servers)
    channel = channels.to_service(target, Tls(ca=files.ca.read_bytes()))
    who = channel.unary_unary(
        "/test.Tls/Who", request_serializer=bytes, response_deserializer=bytes
    )
    try:
        answers = {bytes(await who(b"?", timeout=10)) for _ in range(6)}
    finally:
        await channel.close()
    # round_robin: both processes were dialled, and both passed verification.
    assert answers == {b"one", b"two"}


async def test_a_caller_that_trusts_another_ca_is_not_served(
    stranger: certificates.Files, two_servers: list[int]
) -> None:
    for channel in (
        channels.to_service(f"127.0.0.1:{two_servers[0]}", Tls(ca=stranger.ca.read_bytes())),
        dial(f"127.0.0.1:{two_servers[0]}", tls=True, ca=stranger.ca.read_bytes()),
        # The system's roots do not know a deployment's own CA either.
        dial(f"127.0.0.1:{two_servers[0]}", tls=True),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _who(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "CERTIFICATE_VERIFY_FAILED" in (refused.value.details() or "")


async def test_a_plaintext_caller_is_not_served(two_servers: list[int]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _who(dial(f"127.0.0.1:{two_servers[0]}", tls=False))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_client_that_trusts_the_ca_is_served(
    files: certificates.Files, two_servers: list[int]
) -> None:
    channel = dial(f"127.0.0.1:{two_servers[1]}", tls=True, ca=files.ca.read_bytes())
    assert await _who(channel) == b"two"
    # The certificate names localhost as well as 127.0.0.1.
    channel = dial(f"localhost:{two_servers[1]}", tls=True, ca=files.ca.read_bytes())
    assert await _who(channel) == b"two"


def test_certificates_are_made_once_and_kept(files: certificates.Files) -> None:
    before = {path: path.read_bytes() for path in (files.ca, files.cert, files.key)}
    again = certificates.ensure(Layout(Path.cwd(), files.folder.parent.parent, Path("/none")))
    assert {path: path.read_bytes() for path in (again.ca, again.cert, again.key)} == before
    assert (files.key.stat().st_mode & 0o777) == 0o600


def test_tls_settings_name_what_is_wrong(files: certificates.Files, tmp_path: Path) -> None:
    assert tls(Env({})) == Tls()
    with pytest.raises(ConfigError, match="CHAT_TLS_CERT and CHAT_TLS_KEY go together"):
        tls(Env({"CHAT_TLS_CERT": str(files.cert)}))
    with pytest.raises(ConfigError, match="CHAT_TLS_CA: cannot read"):
        tls(Env({"CHAT_TLS_CA": str(tmp_path / "missing.pem")}))
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"CHAT_TLS_KEY: .* holds no PEM block"):
        tls(Env({"CHAT_TLS_CERT": str(files.cert), "CHAT_TLS_KEY": str(tmp_path / "empty.pem")}))
    found = tls(Env({"CHAT_TLS_CA": str(files.ca)}))
    assert found.ca == files.ca.read_bytes()
    assert found.cert is None
