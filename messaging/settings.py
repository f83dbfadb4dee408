from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatlib.settings import Common, Env


@dataclass(frozen=True)
class Settings:
    common: Common
    server_name: str
    host: str
    port: int
    ops_port: int
    fanout_group: str
    stream_queue: int
    dedup_ttl_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        read = Env(env)
        return cls(
            common=Common(read),
            server_name=read.text("CHAT_SERVER_NAME"),
            host=read.text("CHAT_MESSAGING_HOST", "127.0.0.1"),
            port=read.integer("CHAT_MESSAGING_PORT", minimum=1),
            ops_port=read.integer("CHAT_OPS_PORT", minimum=1),
            fanout_group=read.text("CHAT_FANOUT_GROUP", "messaging-fanout"),
            stream_queue=read.integer("CHAT_STREAM_QUEUE", 256, minimum=1),
            # Far beyond any client's retry window: a retry a day later still finds its id.
            dedup_ttl_seconds=read.integer("CHAT_DEDUP_TTL_SECONDS", 48 * 3600, minimum=86400),
        )
