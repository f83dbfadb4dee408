"""chatlib's pure pieces: routing hash, ids, tokens, settings."""

from __future__ import annotations

import base64
import json
import time

import grpc
import jwt
import pytest

from chatlib import problems, tokens
from chatlib.hashing import partition_for, stable_hash
from chatlib.ids import EPOCH_MS, Snowflake, smallest_id_at, timestamp_ms
from chatlib.leases import LeaseLost
from chatlib.settings import ConfigError, Env

# Pinned: changing the hash re-routes every user. Any other implementation must match these.
VECTORS = [
    (0, 9523843951405948789, 1),
    (1, 17797172410793473910, 2),
    (42, 6319743179241711738, 6),
    (117936850546458624, 13756856520993375621, 9),
    (2**63 - 1, 14040218526631633209, 9),
]


@pytest.mark.parametrize(("user_id", "hashed", "partition"), VECTORS)
def test_stable_hash_vectors(user_id: int, hashed: int, partition: int) -> None:
    assert stable_hash(user_id) == hashed
    assert partition_for(user_id, 12) == partition


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        partition_for(1, 0)


def test_snowflakes_increase_and_carry_worker_and_time() -> None:
    now = [EPOCH_MS + 1_000]
    ids = Snowflake(lambda: 5, clock_ms=lambda: now[0])
    first = [ids.next_id() for _ in range(5000)]  # more than 4,096 in one millisecond
    assert first == sorted(first)
    assert len(set(first)) == 5000
    assert all((i >> 12) & 0x3FF == 5 for i in first)
    assert timestamp_ms(first[0]) == EPOCH_MS + 1_000
    now[0] -= 500  # the wall clock steps back: ids must still increase
    assert ids.next_id() > first[-1]
    assert smallest_id_at(EPOCH_MS + 1_000) <= first[0]


def test_a_lost_lease_stops_minting() -> None:
    def lost() -> int:
        raise LeaseLost("worker id lease 3 is not held")

    with pytest.raises(LeaseLost):
        Snowflake(lost).next_id()


def test_tokens_round_trip_and_reject_forgeries() -> None:
    token = tokens.issue("k" * 32, "42", 60, "s1")
    claims = tokens.verify("k" * 32, token)
    assert (claims.user_id, claims.session_id) == (42, "s1")
    with pytest.raises(tokens.InvalidToken, match="signature is invalid"):
        tokens.verify("other-key" * 4, token)
    expired = tokens.issue("k" * 32, "42", -5)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify("k" * 32, expired)
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(tokens.InvalidToken, match="algorithm is not allowed"):
        tokens.verify("k" * 32, f"{header}.{body}.")
    foreign = jwt.encode({"sub": "42", "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256")
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("k" * 32, foreign)  # no issuer, no session id


def test_a_service_token_has_no_user() -> None:
    claims = tokens.verify("k" * 32, tokens.issue("k" * 32, tokens.SERVICE_SUBJECT, 60))
    with pytest.raises(tokens.InvalidToken, match="not a user"):
        _ = claims.user_id
    verifier = tokens.Verifier("k" * 32)
    with pytest.raises(tokens.InvalidToken, match="not a user"):
        verifier.verify_user(tokens.issue("k" * 32, tokens.SERVICE_SUBJECT, 60))
    assert verifier.verify_user(tokens.issue("k" * 32, "42", 60)).user_id == 42


@pytest.mark.parametrize(
    ("header", "message"),
    [(None, "no access token"), ("Basic abc", "must be 'Bearer"), ("Bearer ", "must be 'Bearer")],
)
def test_bearer_header_errors(header: str | None, message: str) -> None:
    with pytest.raises(tokens.InvalidToken, match=message):
        tokens.bearer(header)


def test_settings_name_the_bad_key() -> None:
    env = Env({"CHAT_PORT": "eighty", "CHAT_LOW": "0"})
    with pytest.raises(ConfigError, match="CHAT_PORT='eighty' is not an integer"):
        env.integer("CHAT_PORT")
    with pytest.raises(ConfigError, match="CHAT_SECRET is required"):
        env.text("CHAT_SECRET")
    with pytest.raises(ConfigError, match="CHAT_LOW=0 is below the minimum 1"):
        env.integer("CHAT_LOW", minimum=1)
    assert env.integer("CHAT_MISSING", 7) == 7


@pytest.mark.parametrize(
    ("code", "status"),
    [
        # A backend that gave up on a call (stopping, or away): the client may retry.
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.CANCELLED, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.NOT_FOUND, 404),
        # What no client can act on: the backend's fault, said as such.
        (grpc.StatusCode.UNKNOWN, 502),
    ],
)
def test_backend_statuses_become_http_statuses(code: grpc.StatusCode, status: int) -> None:
    response = problems.from_code(code, "detail")
    assert response.status == status
    assert json.loads(str(response.text))["status"] == status
