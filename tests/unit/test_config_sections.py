"""The config sections' schema and invariants: what is accepted, and the message for what is
not. The config service and every service read documents with these parsers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chatlib.config_checks import InvalidConfig
from chatlib.config_sections import (
    DEFAULT_AUTH,
    DEFAULT_FEATURES,
    DEFAULT_LIMITS,
    DEFAULT_MESSAGES,
    DEFAULT_NOTIFICATIONS,
    AuthLimits,
    Features,
    Limits,
    Messages,
    Notifications,
    parse,
)
from chatlib.hashing import partition_for
from chatlib.partitioning import OPEN, Era, Partitioning, Stretch
from chatlib.settings import ConfigError
from config_service.grow import _grown as _grown_value
from config_service.settings import admin_tokens, find_operator
from config_service.store import check_transition

GOOD: dict[str, Any] = {
    "partitions": 12,
    "servers": [
        {"name": "m1", "address": "grpc://127.0.0.1:7101", "ranges": [[0, 2], [9, 11]]},
        {"name": "m2", "address": "grpc://127.0.0.1:7102", "ranges": [[3, 8]]},
    ],
}


def changed(path: list[str | int], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def test_partitioning_finds_owners_of_several_ranges() -> None:
    config = Partitioning.parse(GOOD)
    assert [config.owner(p).name for p in (0, 2, 3, 8, 9, 11)] == [
        "m1",
        "m1",
        "m2",
        "m2",
        "m1",
        "m1",
    ]
    assert config.owned_by("m1") == {0, 1, 2, 9, 10, 11}
    assert config.owned_by("m9") == frozenset()
    assert config.server("m2") is not None
    assert config.owner(5).target == "127.0.0.1:7102"
    assert Partitioning.parse(config.to_value()) == config


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            changed(["servers", 1, "ranges"], [[2, 8]]),
            "partition 2 is owned by both 'm1' \\(0-2,9-11\\) and 'm2' \\(2-8\\); ranges must not"
            " overlap",
        ),
        (
            changed(["servers", 1, "ranges"], [[3, 7]]),
            "partition\\(s\\) 8 are owned by no server",
        ),
        (changed(["partitions"], 0), "partitioning.partitions must be between 1 and 1024, got 0"),
        (
            changed(["servers", 0, "address"], "127.0.0.1:7101"),
            "partitioning.servers\\[0\\].address '127.0.0.1:7101' has no scheme; write it as"
            " grpc://host:port",
        ),
        (
            changed(["servers", 0, "address"], "http://127.0.0.1:7101"),
            "scheme must be grpc, got 'http'",
        ),
        (changed(["servers", 0, "address"], "grpc://127.0.0.1"), "with a port 1-65535"),
        (
            changed(["servers", 0, "address"], "grpc://127.0.0.1:7102"),
            "servers\\[1\\].address grpc://127.0.0.1:7102 is also the address of 'm1'",
        ),
        (changed(["servers", 1, "name"], "m1"), "servers\\[1\\].name 'm1' appears twice"),
        (changed(["servers", 1, "ranges"], [[3, 12]]), "must satisfy 0 <= first <= last <= 11"),
        (changed(["servers", 1, "ranges"], [[8, 3]]), "must satisfy 0 <= first <= last"),
        (changed(["servers", 1, "ranges"], [3, 8]), "must be \\[first, last\\]"),
        (changed(["servers", 1, "weight"], 2), "servers\\[1\\]: unknown key 'weight'"),
        (changed(["owner"], "me"), "partitioning: unknown key 'owner'"),
        (changed(["partitions"], "12"), "partitions must be an integer, got string '12'"),
        ([], "partitioning must be a JSON object, got an array"),
    ],
)
def test_invalid_partitioning_is_rejected_with_the_reason(document: Any, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        Partitioning.parse(document)


def _grown(ends: list[int], total: int = 13) -> Partitioning:
    return Partitioning.parse(
        {
            "partitions": total,
            "servers": [{"name": "m1", "address": "grpc://h:1", "ranges": [[0, total - 1]]}],
            "eras": [{"partitions": 12, "ends": ends}],
        }
    )


def test_partitions_change_only_by_growth_while_sends_are_held() -> None:
    grown = _grown([5] * 12)
    held = GOOD | {"hold_sends": True}
    # Not held: the old partitions' ends would not be ends.
    with pytest.raises(InvalidConfig, match="only while sends are held"):
        check_transition("partitioning", GOOD, grown)
    check_transition("partitioning", held, grown)
    # Without recording where the old count ended, readers could not follow a user.
    bare = Partitioning.parse(
        {
            "partitions": 13,
            "servers": [{"name": "m1", "address": "grpc://h:1", "ranges": [[0, 12]]}],
        }
    )
    with pytest.raises(InvalidConfig, match="only while sends are held"):
        check_transition("partitioning", held, bare)
    # Partitions are never removed, and the record of earlier counts is not edited.
    with pytest.raises(InvalidConfig, match="cannot go down from 13 to 12"):
        check_transition("partitioning", grown.to_value(), Partitioning.parse(GOOD))
    with pytest.raises(InvalidConfig, match="changes only when partitions are added"):
        check_transition("partitioning", grown.to_value(), _grown([6] * 12))
    check_transition("partitioning", GOOD, Partitioning.parse(GOOD))
    check_transition("partitioning", GOOD, Partitioning.parse(held))


@pytest.mark.parametrize(
    ("eras", "message"),
    [
        ([{"partitions": 13, "ends": [0] * 13}], "fewer than partitions \\(13\\)"),
        ([{"partitions": 4, "ends": [0] * 3}], "must be 4 offsets"),
        ([{"partitions": 4, "ends": [0, 0, -1, 0]}], "must be 4 offsets"),
        (
            [{"partitions": 4, "ends": [5] * 4}, {"partitions": 3, "ends": [5] * 3}],
            "more than the era before \\(4\\)",
        ),
        (
            [{"partitions": 4, "ends": [5] * 4}, {"partitions": 8, "ends": [5, 4] + [9] * 6}],
            "ends\\[1\\] is before the era before's end",
        ),
        ({"partitions": 4}, "eras must be a JSON array"),
    ],
)
def test_invalid_eras_are_rejected(eras: Any, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        Partitioning.parse(GOOD | {"partitions": 13, "eras": eras} | _all_on_m1(13))


def _all_on_m1(total: int) -> dict[str, Any]:
    return {"servers": [{"name": "m1", "address": "grpc://h:1", "ranges": [[0, total - 1]]}]}


def test_a_users_trail_follows_every_growth_and_joins_stretches_of_one_partition() -> None:
    ends4 = [10, 11, 12, 13]
    ends8 = [20, 21, 22, 23, 4, 5, 6, 7]
    config = Partitioning.parse(
        {
            "partitions": 16,
            **_all_on_m1(16),
            "eras": [{"partitions": 4, "ends": ends4}, {"partitions": 8, "ends": ends8}],
        }
    )
    assert Partitioning.parse(config.to_value()) == config
    for user in range(1, 400):
        p4, p8, p16 = (partition_for(user, n) for n in (4, 8, 16))
        expected = [Stretch(p4, 0, ends4[p4]), Stretch(p8, ends4[p8] if p8 < 4 else 0, ends8[p8])]
        expected.append(Stretch(p16, ends8[p16] if p16 < 8 else 0, OPEN))
        joined: list[Stretch] = []
        for stretch in expected:
            if joined and joined[-1].partition == stretch.partition:
                assert joined[-1].end == stretch.start  # one partition, read on without a gap
                stretch = Stretch(stretch.partition, joined[-1].start, stretch.end)
                joined[-1] = stretch
            else:
                joined.append(stretch)
        assert config.trail(user) == joined, user
    # Without growth, one open stretch of the one partition.
    assert Partitioning.parse(GOOD).trail(7) == [Stretch(partition_for(7, 12), 0, OPEN)]


def test_limits_bounds_and_relations() -> None:
    value = DEFAULT_LIMITS.to_value()
    assert Limits.parse(value) == DEFAULT_LIMITS
    for key, bad, message in [
        ("max_body_bytes", 0, "limits.max_body_bytes must be between 1 and 32768, got 0"),
        ("send_rate_per_second", -1, "limits.send_rate_per_second must be between 0.01"),
        ("send_burst", 1.5, "limits.send_burst must be an integer, got number 1.5"),
        ("history_page_default", 500, "history_page_default \\(500\\) must not exceed"),
        ("history_page_max", True, "must be an integer, got boolean true"),
    ]:
        with pytest.raises(InvalidConfig, match=message):
            Limits.parse(value | {key: bad})
    with pytest.raises(InvalidConfig, match="limits: key 'send_burst' is missing"):
        Limits.parse({k: v for k, v in value.items() if k != "send_burst"})


def test_features_are_known_booleans() -> None:
    assert Features.parse(DEFAULT_FEATURES.to_value()) == DEFAULT_FEATURES
    with pytest.raises(InvalidConfig, match="features: unknown key 'dark_mode'"):
        Features.parse(DEFAULT_FEATURES.to_value() | {"dark_mode": True})
    with pytest.raises(InvalidConfig, match=r"features\.sending_enabled must be true or false"):
        Features.parse(DEFAULT_FEATURES.to_value() | {"sending_enabled": "yes"})


def test_group_records_are_on_for_new_deployments_and_off_where_a_stored_section_lacks_them() -> (
    None
):
    assert DEFAULT_FEATURES.group_records
    stored_before_the_switch = {"registration_open": True, "sending_enabled": True}
    assert not Features.parse(stored_before_the_switch).group_records
    assert Features.parse(stored_before_the_switch | {"group_records": True}).group_records
    with pytest.raises(InvalidConfig, match=r"features\.group_records must be true or false"):
        Features.parse(stored_before_the_switch | {"group_records": 1})
    with pytest.raises(InvalidConfig, match="features: key 'sending_enabled' is missing"):
        Features.parse({"registration_open": True, "group_records": True})


def test_unknown_section_names_the_known_ones() -> None:
    with pytest.raises(
        InvalidConfig, match="unknown section 'quotas' \\(sections: auth, features,"
    ):
        parse("quotas", {})


def test_admin_tokens_name_operators_and_refuse_short_ones() -> None:
    tokens = admin_tokens(["ops=" + "a" * 30, "alice=" + "b" * 24])
    assert find_operator(tokens, "b" * 24) == "alice"
    assert find_operator(tokens, "b" * 23) is None
    with pytest.raises(ConfigError, match="shorter than 24"):
        admin_tokens(["ops=short"])


def test_auth_limits_round_trip_and_refuse_nonsense() -> None:
    assert AuthLimits.parse(DEFAULT_AUTH.to_value()) == DEFAULT_AUTH
    with pytest.raises(InvalidConfig, match=r"auth\.login_failures_per_username must be between"):
        AuthLimits.parse(DEFAULT_AUTH.to_value() | {"login_failures_per_username": 0})
    with pytest.raises(InvalidConfig, match="auth: key 'address_window_seconds' is missing"):
        AuthLimits.parse({k: v for k, v in DEFAULT_AUTH.to_value().items() if "address_w" not in k})


def test_messages_and_notifications_sections() -> None:
    assert Messages.parse(DEFAULT_MESSAGES.to_value()) == DEFAULT_MESSAGES
    with pytest.raises(InvalidConfig, match=r"messages\.typing_seconds must be between 2 and 60"):
        Messages.parse(DEFAULT_MESSAGES.to_value() | {"typing_seconds": 1})
    defaults = DEFAULT_NOTIFICATIONS.to_value()
    assert Notifications.parse(defaults) == DEFAULT_NOTIFICATIONS
    on = defaults | {"webhook_url": "https://push.example:8443/v1/send?app=chat"}
    assert Notifications.parse(on).webhook_url == on["webhook_url"]
    for bad in ("ftp://push.example/", "https://push example/", "push.example"):
        with pytest.raises(InvalidConfig, match=r"notifications\.webhook_url must be empty"):
            Notifications.parse(defaults | {"webhook_url": bad})
    with pytest.raises(InvalidConfig, match=r"notifications\.max_attempts must be between"):
        Notifications.parse(defaults | {"max_attempts": 0})


def test_a_growth_places_the_new_partitions_after_each_servers_ranges() -> None:
    grown = Partitioning.parse(_grown_value(Partitioning.parse(GOOD), 24, list(range(12))))
    assert grown.partitions == 24
    assert grown.eras == (Era(12, tuple(range(12))),)
    assert not grown.hold_sends
    assert grown.owned_by("m1") == frozenset([0, 1, 2, 9, 10, 11, *range(12, 18)])
    assert grown.owned_by("m2") == frozenset([*range(3, 9), *range(18, 24)])
    # Three servers, seven new partitions: 3, 2, 2.
    three = Partitioning.parse(
        {
            "partitions": 3,
            "servers": [
                {"name": n, "address": f"grpc://h:{i + 1}", "ranges": [[i, i]]}
                for i, n in enumerate(("a", "b", "c"))
            ],
        }
    )
    spread = Partitioning.parse(_grown_value(three, 10, [0, 0, 0]))
    assert [len(spread.owned_by(n)) for n in ("a", "b", "c")] == [4, 3, 3]
