from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatlib.settings import Common, Env


@dataclass(frozen=True)
class Settings:
    common: Common
    query_host: str
    query_port: int
    ops_port: int
    writer_group: str
    #: The writer's static member id in its group ("" for none). A writer restarted under the
    #: same id gets its partitions back at once instead of waiting for a rebalance; two live
    #: writers must never share one (Kafka fences the older).
    writer_instance: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        read = Env(env)
        return cls(
            common=Common(read),
            query_host=read.text("CHAT_HISTORY_HOST", "127.0.0.1"),
            query_port=read.integer("CHAT_HISTORY_PORT", 7201, minimum=1),
            ops_port=read.integer("CHAT_OPS_PORT", 9301, minimum=1),
            writer_group=read.text("CHAT_HISTORY_GROUP", "history-writers"),
            writer_instance=env.get("CHAT_WRITER_INSTANCE", ""),
        )
