from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatlib.settings import Common, ConfigError, Env


@dataclass(frozen=True)
class Settings:
    common: Common
    host: str
    port: int
    ops_port: int
    history_address: str
    access_ttl_seconds: int
    refresh_ttl_seconds: int
    max_request_bytes: int
    #: Deadline of every gRPC call the BFF makes. Above the messaging server's own answer
    #: time for a send (5 s), so a slow Kafka is answered 503 by messaging, not 504 here.
    call_deadline_seconds: float
    #: Server name to the address the BFF itself dials, where it differs from the address
    #: clients are given (containers, NAT). Empty: dial what the partitioning config says.
    messaging_dial: dict[str, str]
    #: On SIGTERM, how long /readyz fails while requests are still served, so a balancer that
    #: checks it sends no new ones here before the sockets are closed and the listener goes.
    #: 0 with nothing before the BFF; ./dev's cluster balancer checks every second.
    drain_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        read = Env(env)
        return cls(
            common=Common(read),
            host=read.text("CHAT_BFF_HOST", "127.0.0.1"),
            port=read.integer("CHAT_BFF_PORT", 8080, minimum=1),
            ops_port=read.integer("CHAT_OPS_PORT", 9401, minimum=1),
            history_address=read.text("CHAT_HISTORY_ADDRESS", "127.0.0.1:7201"),
            access_ttl_seconds=read.integer("CHAT_ACCESS_TTL_SECONDS", 900, minimum=10),
            refresh_ttl_seconds=read.integer("CHAT_REFRESH_TTL_SECONDS", 30 * 86400, minimum=60),
            max_request_bytes=read.integer("CHAT_MAX_REQUEST_BYTES", 64 * 1024, minimum=1024),
            call_deadline_seconds=read.number("CHAT_BFF_CALL_DEADLINE_SECONDS", 8.0),
            messaging_dial=_pairs("CHAT_MESSAGING_DIAL", read.items("CHAT_MESSAGING_DIAL")),
            drain_seconds=read.number("CHAT_BFF_DRAIN_SECONDS", 0.0),
        )


def _pairs(key: str, items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"setting {key}: {item!r} is not name=host:port")
        pairs[name] = address
    return pairs
