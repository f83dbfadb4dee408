"""Who may do what in the cluster: Cassandra roles and grants, Kafka ACLs.

``./dev up --cluster`` runs :func:`cassandra_roles` before the schema migrations (they run as
the operator's ``admin`` role) and :func:`grants` after them (a grant names tables that must
exist). Each step is idempotent: a second ``up`` repeats it and changes nothing.

A service is granted what its code does and nothing else: messaging writes the chats and group
members it owns; history writes its own tables and reads those two. Redis's ACL users are in the
nodes' ACL file (``infra/services/redis.py``); Kafka's SCRAM users are made when the brokers'
storage is formatted (``infra/services/kafka.py``).
"""

from __future__ import annotations

import logging
import time

from cassandra import AuthenticationFailed, ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.query import SimpleStatement
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from infra import cluster
from infra.console import detail
from infra.errors import InfraError

KEYSPACE = "chat"
#: The default superuser a fresh Cassandra makes (its password is known to everyone).
DEFAULT_ROLE = ("cassandra", "cassandra")
#: How long a fresh node may take to make its default superuser.
DEFAULT_ROLE_WAIT = 90.0
#: Keyspaces Cassandra keeps for itself that a node loss must not make unreadable: logins
#: (system_auth) and repair's bookkeeping. Made with one replica; the cluster gives them three.
SYSTEM_KEYSPACES = ("system_auth", "system_distributed", "system_traces")

#: Tables each service writes, and tables it only reads.
CASSANDRA_WRITES = {
    "messaging": ("chats", "group_members", "blocks", "attachments", "attachments_by_message"),
    "history": (
        "messages_by_chat",
        "chat_buckets",
        "chats_by_user",
        "read_marks",
        "group_last",
        "users",
        "users_by_name",
    ),
}
CASSANDRA_READS = {"messaging": (), "history": ("chats", "group_members")}

DELIVERIES = "chat.deliveries.v1"
DEAD_LETTERS = "chat.deliveries.dlq.v1"
NOTIFICATIONS_DEAD = "chat.notifications.dead.v1"
USERS = "chat.users.v1"
#: Per service: topics it reads, topics it writes, and the prefix of its consumer groups.
KAFKA_RIGHTS = {
    "messaging": ((DELIVERIES,), (DELIVERIES, DEAD_LETTERS), "messaging-"),
    "history": ((DELIVERIES, USERS), (USERS, DEAD_LETTERS), "history-"),
    "notifier": ((DELIVERIES,), (NOTIFICATIONS_DEAD,), "notifier"),
}


def _session(topology: cluster.Topology, user: str, password: str) -> tuple[Cluster, Session]:
    for name in ("cassandra.cluster", "cassandra.pool", "cassandra.connection"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    client = Cluster(
        list(topology.cassandra.values()),
        port=cluster.CASSANDRA_PORT,
        auth_provider=PlainTextAuthProvider(user, password),
        protocol_version=5,
        connect_timeout=5,
    )
    try:
        return client, client.connect()
    except BaseException:
        client.shutdown()
        raise


def _run(session: Session, cql: str) -> None:
    # Roles and grants are read at QUORUM or ONE by the nodes; written at ALL here so that the
    # next login on any node already sees them.
    session.execute(SimpleStatement(cql, consistency_level=ConsistencyLevel.ALL), timeout=30)


def _admin(topology: cluster.Topology, keys: cluster.Secrets) -> tuple[Cluster, Session]:
    return _session(topology, cluster.ADMIN, keys.password(f"cassandra-{cluster.ADMIN}"))


def cassandra_roles(topology: cluster.Topology, keys: cluster.Secrets) -> None:
    """The operator's ``admin`` superuser (made once, through the default role, which is then
    shut), three replicas of the system keyspaces, and a login role per service."""
    try:
        client, session = _admin(topology, keys)
    except NoHostAvailable as exc:
        if not _refused(exc):
            raise
        _first_admin(topology, keys)
        client, session = _admin(topology, keys)
    try:
        for user in cluster.CASSANDRA_USERS:
            if user == cluster.ADMIN:
                continue
            password = keys.password(f"cassandra-{user}")
            _run(
                session,
                f"CREATE ROLE IF NOT EXISTS {user} WITH LOGIN = true AND PASSWORD = '{password}'",
            )
            if not _logs_in(topology, user, password):
                # A role made with another secret (the secrets folder was replaced). Cassandra
                # takes a new password for a role at most every 5 s: not run when not needed.
                _run(session, f"ALTER ROLE {user} WITH LOGIN = true AND PASSWORD = '{password}'")
            detail(f"role {user}")
    finally:
        client.shutdown()


def _logs_in(topology: cluster.Topology, user: str, password: str) -> bool:
    try:
        client, _ = _session(topology, user, password)
    except NoHostAvailable as exc:
        if _refused(exc):
            return False
        raise
    client.shutdown()
    return True


def _refused(exc: NoHostAvailable) -> bool:
    return any(isinstance(error, AuthenticationFailed) for error in exc.errors.values())


def _first_admin(topology: cluster.Topology, keys: cluster.Secrets) -> None:
    """On a fresh cluster: log in as the default superuser, give the system keyspaces three
    replicas, make ``admin``, and shut the default role."""
    deadline = time.monotonic() + DEFAULT_ROLE_WAIT
    while True:
        try:
            client, session = _session(topology, *DEFAULT_ROLE)
            break
        except NoHostAvailable:
            # A fresh node makes the default role some seconds after it starts listening.
            if time.monotonic() > deadline:
                raise InfraError(
                    "Cassandra refuses both the admin role and the default one: was the"
                    " cluster set up with other secrets? (./dev reset starts it afresh)"
                ) from None
            time.sleep(2)
    try:
        for keyspace in SYSTEM_KEYSPACES:
            _run(
                session,
                f"ALTER KEYSPACE {keyspace} WITH replication = {cluster.KEYSPACE_REPLICATION}",
            )
        password = keys.password(f"cassandra-{cluster.ADMIN}")
        _run(
            session,
            f"CREATE ROLE IF NOT EXISTS {cluster.ADMIN}"
            f" WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = '{password}'",
        )
        detail(f"role {cluster.ADMIN} (superuser); system keyspaces on three replicas")
    finally:
        client.shutdown()
    client, session = _admin(topology, keys)
    try:
        # Nobody logs in with a password the whole world knows.
        _run(session, "ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false")
        detail("default role cassandra shut")
    finally:
        client.shutdown()


def grants(topology: cluster.Topology, keys: cluster.Secrets) -> None:
    """Each service's rights on the tables (after the migrations made them) and the topics."""
    client, session = _admin(topology, keys)
    try:
        for user, tables in CASSANDRA_WRITES.items():
            for table in tables:
                for right in ("SELECT", "MODIFY"):
                    _run(session, f"GRANT {right} ON TABLE {KEYSPACE}.{table} TO {user}")
            for table in CASSANDRA_READS[user]:
                _run(session, f"GRANT SELECT ON TABLE {KEYSPACE}.{table} TO {user}")
            detail(f"cassandra {user}: writes {', '.join(tables)}")
    finally:
        client.shutdown()
    kafka_acls(topology, keys)


def kafka_acls(topology: cluster.Topology, keys: cluster.Secrets) -> None:
    admin = AdminClient(
        {
            "bootstrap.servers": topology.kafka_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": cluster.ADMIN,
            "sasl.password": keys.password(f"kafka-{cluster.ADMIN}"),
        }
    )
    bindings = []
    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    for user, (reads, writes, group_prefix) in KAFKA_RIGHTS.items():
        bindings += [_allow(user, ResourceType.TOPIC, t, literal, AclOperation.READ) for t in reads]
        bindings += [
            _allow(user, ResourceType.TOPIC, t, literal, AclOperation.WRITE) for t in writes
        ]
        bindings.append(_allow(user, ResourceType.GROUP, group_prefix, prefixed, AclOperation.READ))
        detail(
            f"kafka {user}: reads {', '.join(reads)}; writes {', '.join(writes)};"
            f" groups {group_prefix}*"
        )
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result()


def _allow(
    user: str,
    kind: ResourceType,
    name: str,
    pattern: ResourcePatternType,
    operation: AclOperation,
) -> AclBinding:
    return AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
