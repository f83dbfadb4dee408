from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatlib.object_store import ObjectStoreAccess
from chatlib.settings import Common, Env, secret

#: Kafka client settings of the send path and the fan-out (the benchmark's Kafka floor uses
#: the same). The fan-out's broker answers a fetch once FETCH_MIN_BYTES are there or
#: FETCH_WAIT_MS have passed: the knob between latency and what every fetch costs both sides.
FANOUT_FETCH_WAIT_MS = 10
FANOUT_FETCH_MIN_BYTES = 64 * 1024
PRODUCER_LINGER_MS = 5
#: Records a second (per server, produced or fanned out) above which those waits are used;
#: below two thirds of it the send path produces through a twin that does not linger and the
#: fan-out fetches through one answered at the first byte (``chatlib/pace.py``). 0: always
#: wait.
BATCH_ABOVE_PER_S = 300


@dataclass(frozen=True)
class Settings:
    common: Common
    server_name: str
    host: str
    port: int
    ops_port: int
    fanout_group: str
    stream_queue: int
    recent_bytes_per_partition: int
    fanout_fetch_wait_ms: int
    fanout_fetch_min_bytes: int
    producer_linger_ms: int
    batch_above_per_s: int
    #: The history query service: told of opened direct chats (chat lists show them at once).
    history_address: str
    #: The object store attachments go to; None (no secret key file set): attachments off.
    object_store: ObjectStoreAccess | None
    #: Browser origins the store lets upload and download (CORS), "*" for any: the presigned
    #: URL is what grants access.
    files_origins: list[str]

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
            # What resumes are served from without reading Kafka (messaging/streams/recent.py).
            recent_bytes_per_partition=read.integer(
                "CHAT_RECENT_BYTES_PER_PARTITION", 8 * 2**20, minimum=0
            ),
            fanout_fetch_wait_ms=read.integer(
                "CHAT_FANOUT_FETCH_WAIT_MS", FANOUT_FETCH_WAIT_MS, minimum=0
            ),
            fanout_fetch_min_bytes=read.integer(
                "CHAT_FANOUT_FETCH_MIN_BYTES", FANOUT_FETCH_MIN_BYTES, minimum=1
            ),
            producer_linger_ms=read.integer(
                "CHAT_PRODUCER_LINGER_MS", PRODUCER_LINGER_MS, minimum=0
            ),
            batch_above_per_s=read.integer("CHAT_BATCH_ABOVE_PER_S", BATCH_ABOVE_PER_S, minimum=0),
            history_address=read.text("CHAT_HISTORY_ADDRESS", "127.0.0.1:7201"),
            object_store=_object_store(read),
            files_origins=list(read.items("CHAT_FILES_ORIGINS", "*")),
        )


def _object_store(read: Env) -> ObjectStoreAccess | None:
    key = secret(read, "CHAT_S3_SECRET_KEY_FILE")
    if key is None:
        return None
    return ObjectStoreAccess(
        endpoint=read.text("CHAT_S3_ENDPOINT", "http://127.0.0.1:8333"),
        bucket=read.text("CHAT_S3_BUCKET", "chat-files"),
        access_key=read.text("CHAT_S3_ACCESS_KEY", "chat"),
        secret_key=key,
        public_endpoint=read.optional("CHAT_S3_PUBLIC_ENDPOINT") or "",
    )
