"""gRPC channels from one of our services to another.

A target may list several processes (``ipv4:127.0.0.1:7201,127.0.0.1:7202``): calls are
balanced over them one by one (``round_robin``), and one that is down or stopped answering is
skipped until it is back. Pings every 2 s find a process that stopped answering (frozen, cut
off) within about 4 s, rather than when a call's deadline runs out.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

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
    target: str, interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None
) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=OPTIONS, interceptors=interceptors)
