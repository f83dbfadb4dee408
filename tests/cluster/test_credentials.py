"""Nobody gets in without credentials: Kafka, Cassandra and Redis (and its sentinels) each
refuse a client that has none, or the wrong ones; a service's login is refused what its rights
do not cover."""

from __future__ import annotations

import pytest
import redis
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra import cluster
from infra.layout import Layout

KEYS = cluster.Secrets.of(Layout.from_env())
CASSANDRA = list(cluster.CASSANDRA_ADDRESSES.values())


def _kafka(**login: str) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": cluster.KAFKA_BOOTSTRAP,
            "socket.connection.setup.timeout.ms": 2000,
            "log_level": 0,
            **login,
        }
    )


def _scram(user: str, password: str) -> dict[str, str]:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }


def test_kafka_refuses_a_client_without_credentials() -> None:
    with pytest.raises(KafkaException):
        _kafka().list_topics(timeout=5)
    with pytest.raises(KafkaException):
        _kafka(**_scram("messaging", "not-the-password")).list_topics(timeout=5)
    # The right login gets in.
    topics = _kafka(**_scram("messaging", KEYS.password("kafka-messaging"))).list_topics(timeout=10)
    assert "chat.deliveries.v1" in topics.topics


def test_kafka_acls_keep_a_service_to_its_own_topics() -> None:
    """The notifier reads deliveries and writes its dead letters; the users topic is not its."""
    producer = Producer(
        {
            "bootstrap.servers": cluster.KAFKA_BOOTSTRAP,
            **_scram("notifier", KEYS.password("kafka-notifier")),
            "message.timeout.ms": 10000,
        }
    )
    errors: list[object] = []
    # librdkafka answers the refusal in one of two places: at produce(), when its metadata
    # already says the topic is forbidden to this login, or else through the delivery report.
    # Either is the broker's ACL refusing; a message that is neither refused nor errored fails.
    try:
        producer.produce("chat.users.v1", b"x", on_delivery=lambda err, _: errors.append(err))
    except KafkaException as refused:
        errors.append(refused.args[0])
    producer.flush(15)
    assert len(errors) == 1
    assert errors[0] is not None
    assert "AUTHORIZATION" in str(errors[0]).upper()


def _cassandra(auth: PlainTextAuthProvider | None) -> Cluster:
    return Cluster(CASSANDRA, auth_provider=auth, protocol_version=5, connect_timeout=5)


def test_cassandra_refuses_a_client_without_credentials() -> None:
    for auth in (None, PlainTextAuthProvider("history", "not-the-password")):
        client = _cassandra(auth)
        try:
            with pytest.raises(NoHostAvailable, match=r"(?i)authent"):
                client.connect()
        finally:
            client.shutdown()


def test_cassandra_roles_are_granted_only_their_tables() -> None:
    """History reads the chats messaging writes, and may not write them."""
    client = _cassandra(PlainTextAuthProvider("history", KEYS.password("cassandra-history")))
    try:
        session = client.connect()
        session.execute("SELECT chat_id FROM chat.chats LIMIT 1")
        with pytest.raises(Unauthorized):
            session.execute(
                "INSERT INTO chat.chats (chat_id, kind, member_ids) VALUES ('x', 'direct', {1, 2})"
            )
        with pytest.raises(Unauthorized):
            session.execute("SELECT version FROM chat.schema_versions LIMIT 1")
    finally:
        client.shutdown()


#: A refusal is an answer: asked once (redis-py retries an AuthenticationError, a
#: ConnectionError, three times with backoff by default: 8 s a test).
ONCE = Retry(NoBackoff(), 0)


@pytest.mark.parametrize("port", [*cluster.REDIS_PORTS.values(), *cluster.SENTINEL_PORTS.values()])
def test_redis_and_its_sentinels_refuse_a_client_without_credentials(port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=ONCE)
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()
    wrong = redis.Redis(
        host="127.0.0.1",
        port=port,
        username="bff",
        password="not-the-password",
        socket_timeout=5,
        retry=ONCE,
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    finally:
        wrong.close()


def test_a_redis_service_user_may_not_administer() -> None:
    primary = next(iter(cluster.REDIS_PORTS.values()))
    client = redis.Redis(
        host="127.0.0.1",
        port=primary,
        username="bff",
        password=KEYS.password("redis-bff"),
        socket_timeout=5,
    )
    try:
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.config_get("*")
    finally:
        client.close()
