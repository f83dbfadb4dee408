"""gRPC channels from one of our services to another.

A target may list several processes (``ipv4:127.0.0.1:7201,127.0.0.1:7202``): calls are
balanced over them one by one (``round_robin``), and one that is down or stopped answering is
skipped until it is back. Pings every 2 s find a process that stopped answering (frozen, cut
off) within about 4 s, rather than when a call's deadline runs out.

With TLS configured (``Tls``: ``CHAT_TLS_*``, set by ``./dev up --cluster``) servers listen
with their certificate and channels verify the server against the CA; without it both are
plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from chatlib.settings import Tls

OPTIONS = (
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.keepalive_time_ms", 2_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    # The wait for any ping's answer (60 s by default), which bounds the one above.
    ("grpc.http2.ping_timeout_ms", 2_000),
    # A connection attempt to a frozen server (its kernel still accepts) fails after 2 s
    # instead of 20 s, so the call fails over rather than waits.
    ("grpc.min_reconnect_backoff_ms", 2_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

#: What every one of our gRPC servers allows its callers: the pings above (and the mobile
#: client's, clients/stream.py). Without these a server answers the third ping within 5 min
#: with GOAWAY "too_many_pings", and calls in flight on that connection fail.
SERVER_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
    ("grpc.http2.max_ping_strikes", 0),
)


def to_service(
    target: str,
    tls: Tls,
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    if tls.ca is None:
        return grpc.aio.insecure_channel(target, options=OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target,
        grpc.ssl_channel_credentials(root_certificates=tls.ca),
        options=OPTIONS + verified_name(target),
        interceptors=interceptors,
    )


def verified_name(target: str) -> tuple[tuple[str, str], ...]:
    """What a server's certificate must name when ``target`` lists several addresses
    (``ipv4:a:1,b:2``): gRPC would check the whole list as one host name. The first address's
    host stands for all, so every process behind one such target presents a certificate that
    names it (on loopback, 127.0.0.1; across hosts, dial a DNS name the certificates carry)."""
    scheme, _, rest = target.partition(":")
    if scheme not in ("ipv4", "ipv6") or "," not in rest:
        return ()
    first = rest.split(",")[0]
    host = first.rsplit(":", 1)[0].strip("[]")
    return (("grpc.ssl_target_name_override", host),)


def listen(server: grpc.aio.Server, address: str, tls: Tls) -> int:
    """Open ``address`` on ``server``: with the certificate when TLS is configured."""
    if tls.cert is None or tls.key is None:
        return server.add_insecure_port(address)
    credentials = grpc.ssl_server_credentials([(tls.key, tls.cert)])
    return server.add_secure_port(address, credentials)
