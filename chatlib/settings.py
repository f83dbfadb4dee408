"""Reading settings from the environment: typed, and loud about a missing or malformed key."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the key."""


class Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, key: str, default: str | None = None) -> str:
        value = self._env.get(key, default)
        if value is None or value == "":
            raise ConfigError(f"setting {key} is required but not set")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int:
        raw = self._env.get(key)
        if raw is None or raw == "":
            if default is None:
                raise ConfigError(f"setting {key} is required but not set")
            value = default
        else:
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"setting {key}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"setting {key}={value} is below the minimum {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        raw = self._env.get(key)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"setting {key}={raw!r} is not a number") from None

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self._env.get(key) or default
        if value not in choices:
            raise ConfigError(f"setting {key}={value!r} is not one of {', '.join(choices)}")
        return value

    def items(self, key: str, default: str = "") -> list[str]:
        """A comma-separated list; empty when unset and no default is given."""
        raw = self._env.get(key) or default
        return [item.strip() for item in raw.split(",") if item.strip()]


class Common:
    """Keys every service reads; each service's Settings holds one of these."""

    def __init__(self, env: Env) -> None:
        self.kafka_bootstrap = env.text("CHAT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        self.deliveries_topic = env.text("CHAT_DELIVERIES_TOPIC", "chat.deliveries.v1")
        self.dead_letter_topic = env.text("CHAT_DEAD_LETTER_TOPIC", "chat.deliveries.dlq.v1")
        #: Every registered user (compacted): with the deliveries topic, what a keyspace is
        #: rebuilt from (``python -m history rebuild``).
        self.users_topic = env.text("CHAT_USERS_TOPIC", "chat.users.v1")
        self.cassandra_hosts = env.items("CHAT_CASSANDRA_HOSTS", "127.0.0.1")
        self.cassandra_port = env.integer("CHAT_CASSANDRA_PORT", 9042)
        self.keyspace = env.text("CHAT_KEYSPACE", "chat")
        #: How a keyspace is created (the migrations and a rebuild create one).
        self.keyspace_replication = env.text(
            "CHAT_KEYSPACE_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        self.redis_url = env.text("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0")
        self.otlp_endpoint = env.text("CHAT_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        # Where /livez, /readyz and /metrics listen: loopback by default; 0.0.0.0 where a
        # scraper or an orchestrator on another host must reach them (compose).
        self.ops_host = env.text("CHAT_OPS_HOST", "127.0.0.1")
        self.fluent_host = env.text("CHAT_FLUENT_HOST", "-")
        self.fluent_port = env.integer("CHAT_FLUENT_PORT", 24224)
        self.jwt_secret = env.text("CHAT_JWT_SECRET")
        # Share of new traces recorded. 1.0 records every send (development, tests); at
        # hundreds of messages per second the span work costs more CPU than the sends do.
        self.trace_sample_ratio = env.number("CHAT_TRACE_SAMPLE_RATIO", 1.0)
        # How a service process runs (chatlib/lifecycle.py): its event loop, and the cyclic
        # garbage collector's first-generation threshold (0 keeps Python's default).
        self.event_loop = env.choice("CHAT_EVENT_LOOP", ("uvloop", "asyncio"), "uvloop")
        self.gc_threshold = env.integer("CHAT_GC_THRESHOLD", 20_000, minimum=0)
        self.gil_switch_ms = env.number("CHAT_GIL_SWITCH_MS", 0.5)
        if not 0.1 <= self.gil_switch_ms <= 100:
            raise ConfigError(f"setting CHAT_GIL_SWITCH_MS={self.gil_switch_ms} is not 0.1-100")
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ConfigError(
                f"setting CHAT_TRACE_SAMPLE_RATIO={self.trace_sample_ratio} is not between 0 and 1"
            )
