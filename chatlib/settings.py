"""Reading settings from the environment: typed, and loud about a missing or malformed key.

How to reach Kafka, Cassandra and Redis is configuration, the same shapes for one node or a
cluster: address lists, and a login per service whose password is read from the file a setting
names (never from the command line, where other users could read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    def optional(self, key: str) -> str | None:
        """The value, or None when the key is unset or empty."""
        value = self._env.get(key)
        return value if value else None

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


@dataclass(frozen=True)
class Login:
    """A user and its password."""

    user: str
    password: str = field(repr=False)


def secret(env: Env, file_key: str) -> str | None:
    """What the file that ``file_key`` names holds (a password), or None when it is unset."""
    path = env.optional(file_key)
    if path is None:
        return None
    try:
        found = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"setting {file_key}: cannot read {path}: {exc.strerror}") from None
    if not found:
        raise ConfigError(f"setting {file_key}: {path} is empty")
    return found


def login(env: Env, user_key: str, file_key: str) -> Login | None:
    """The login of ``user_key``, its password read from the file ``file_key`` names; None
    when neither is set (a server that asks for no credentials)."""
    user = env.optional(user_key)
    password = secret(env, file_key)
    if user is None and password is None:
        return None
    if user is None or password is None:
        raise ConfigError(f"settings {user_key} and {file_key} go together: set both or neither")
    return Login(user, password)


#: See KafkaAccess.config.
SOCKET_TIMEOUT_MS = 10_000
#: How often every Kafka client reads the cluster's metadata again (new partitions among it).
METADATA_REFRESH_MS = 10_000


@dataclass(frozen=True)
class KafkaAccess:
    """How to reach Kafka: every broker of the cluster, and this service's SASL/SCRAM login."""

    bootstrap: str
    login: Login | None = None

    def config(self, **settings: Any) -> dict[str, Any]:
        """librdkafka settings for a client of this cluster, with ``settings`` on top."""
        found: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            # A broker that stops answering with its port open (a frozen process, a gray
            # failure) holds a request for this long before the client gives up on it and asks
            # another broker; librdkafka's default is a minute, of stalled streams.
            "socket.timeout.ms": SOCKET_TIMEOUT_MS,
            # How soon a client learns of partitions added to a topic (``config_service/grow.py``
            # waits this long twice before it uses them): a group's consumers start reading
            # them, a producer may write to them. librdkafka's default is five minutes.
            "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
        }
        if self.login is not None:
            found |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": self.login.user,
                "sasl.password": self.login.password,
            }
        return {**found, **settings}


@dataclass(frozen=True)
class CassandraAccess:
    """How to reach Cassandra: contact points (the driver learns the rest of the ring), the
    native port, and this service's role."""

    hosts: tuple[str, ...]
    port: int
    login: Login | None = None


@dataclass(frozen=True)
class RedisAccess:
    """How to reach the Redis primary: one address (``url``), or the sentinels that know which
    node is the primary of ``master`` now; and this service's ACL user."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    login: Login | None = None
    #: What the sentinels themselves ask for (they are not Redis's ACL users).
    sentinel_password: str | None = field(default=None, repr=False)


def _addresses(items: list[str], key: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in items:
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"setting {key}: {item!r} is not host:port")
        found.append((host, int(port)))
    return tuple(found)


@dataclass(frozen=True)
class Tls:
    """TLS on our gRPC hops: what a server presents, and what a caller trusts. Both unset is
    plaintext (the single-node stack on loopback)."""

    #: The CA a caller verifies the servers it dials against.
    ca: bytes | None = field(default=None, repr=False)
    #: The certificate chain and key this process's gRPC server presents.
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)


def _file_bytes(env: Env, key: str) -> bytes | None:
    path = env.optional(key)
    if path is None:
        return None
    try:
        found = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"setting {key}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in found:
        raise ConfigError(f"setting {key}: {path} holds no PEM block")
    return found


def tls(env: Env) -> Tls:
    cert = _file_bytes(env, "CHAT_TLS_CERT")
    key = _file_bytes(env, "CHAT_TLS_KEY")
    if (cert is None) != (key is None):
        raise ConfigError(
            "settings CHAT_TLS_CERT and CHAT_TLS_KEY go together: set both or neither"
        )
    return Tls(_file_bytes(env, "CHAT_TLS_CA"), cert, key)


def redis_access(env: Env) -> RedisAccess:
    """The Redis keys alone: what a command that only talks to Redis (the config CLI) reads,
    without the secrets a service needs."""
    return RedisAccess(
        env.text("CHAT_REDIS_URL", "redis://127.0.0.1:6379/0"),
        _addresses(env.items("CHAT_REDIS_SENTINELS"), "CHAT_REDIS_SENTINELS"),
        env.text("CHAT_REDIS_MASTER", "chat"),
        login(env, "CHAT_REDIS_USER", "CHAT_REDIS_PASSWORD_FILE"),
        secret(env, "CHAT_REDIS_SENTINEL_PASSWORD_FILE"),
    )


class Common:
    """Keys every service reads; each service's Settings holds one of these."""

    def __init__(self, env: Env) -> None:
        self.kafka = KafkaAccess(
            env.text("CHAT_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            login(env, "CHAT_KAFKA_USER", "CHAT_KAFKA_PASSWORD_FILE"),
        )
        self.deliveries_topic = env.text("CHAT_DELIVERIES_TOPIC", "chat.deliveries.v1")
        self.dead_letter_topic = env.text("CHAT_DEAD_LETTER_TOPIC", "chat.deliveries.dlq.v1")
        #: Notifications the webhook refused for good (the notifier's dead letters).
        self.notifications_dead_letter_topic = env.text(
            "CHAT_NOTIFICATIONS_DEAD_LETTER_TOPIC", "chat.notifications.dead.v1"
        )
        #: Every registered user (compacted): with the deliveries topic, what a keyspace is
        #: rebuilt from (``python -m history rebuild``).
        self.users_topic = env.text("CHAT_USERS_TOPIC", "chat.users.v1")
        self.cassandra = CassandraAccess(
            tuple(env.items("CHAT_CASSANDRA_HOSTS", "127.0.0.1")),
            env.integer("CHAT_CASSANDRA_PORT", 9042),
            login(env, "CHAT_CASSANDRA_USER", "CHAT_CASSANDRA_PASSWORD_FILE"),
        )
        self.keyspace = env.text("CHAT_KEYSPACE", "chat")
        #: How a keyspace is created (the migrations and a rebuild create one).
        self.keyspace_replication = env.text(
            "CHAT_KEYSPACE_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        self.redis = redis_access(env)
        self.tls = tls(env)
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
