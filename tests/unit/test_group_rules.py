"""Who may change a group and what each change does (messaging/groups/rules.py)."""

from __future__ import annotations

import pytest

from chatlib.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from messaging.groups import rules
from messaging.groups.rules import Action, GroupState, MemberRow

OWNER, ADMIN, MEMBER, GONE, OUTSIDER = 1, 2, 3, 4, 5


def state() -> GroupState:
    return GroupState(
        "g:9",
        "team",
        3,
        30,
        {
            OWNER: MemberRow("owner", 10, None),
            ADMIN: MemberRow("admin", 10, None),
            MEMBER: MemberRow("member", 20, None),
            GONE: MemberRow(None, 10, 25),
        },
    )


def test_create_makes_the_creator_owner_and_counts_them_in_the_limit() -> None:
    plan = rules.create(OWNER, " team ", [ADMIN, MEMBER, OWNER], maximum=3)
    assert (plan.action, plan.name, plan.subjects) == (Action.CREATED, "team", (1, 2, 3))
    assert plan.joining == {OWNER: "owner", ADMIN: "member", MEMBER: "member"}
    with pytest.raises(FailedPrecondition, match="at most 2 members"):
        rules.create(OWNER, "team", [ADMIN, MEMBER], maximum=2)


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\x07name"])
def test_names_must_be_short_visible_text(name: str) -> None:
    with pytest.raises(InvalidArgument):
        rules.create(OWNER, name, [], maximum=10)


def test_only_owner_and_admins_add_and_rename() -> None:
    assert rules.add(state(), ADMIN, [OUTSIDER], maximum=10) is not None
    assert rules.rename(state(), OWNER, "new") is not None
    with pytest.raises(PermissionDenied):
        rules.add(state(), MEMBER, [OUTSIDER], maximum=10)
    with pytest.raises(PermissionDenied):
        rules.rename(state(), MEMBER, "mine")
    with pytest.raises(PermissionDenied, match="not a member"):
        rules.add(state(), GONE, [OUTSIDER], maximum=10)


def test_adding_members_again_or_renaming_to_the_same_name_changes_nothing() -> None:
    assert rules.add(state(), OWNER, [MEMBER, ADMIN], maximum=10) is None
    assert rules.rename(state(), OWNER, "team") is None
    plan = rules.add(state(), OWNER, [MEMBER, GONE], maximum=10)
    assert plan is not None
    assert plan.joining == {GONE: "member"}  # a former member comes back, a member stays


def test_the_size_limit_counts_current_members_only() -> None:
    assert rules.add(state(), OWNER, [OUTSIDER], maximum=4) is not None
    with pytest.raises(FailedPrecondition, match="at most 3 members"):
        rules.add(state(), OWNER, [OUTSIDER], maximum=3)


def test_admins_remove_members_only_and_the_owner_anyone() -> None:
    plan = rules.remove(state(), ADMIN, MEMBER)
    assert plan is not None
    assert (plan.action, plan.leaving) == (Action.REMOVED, (MEMBER,))
    with pytest.raises(PermissionDenied):
        rules.remove(state(), ADMIN, OWNER)
    with pytest.raises(PermissionDenied):
        rules.remove(state(), MEMBER, ADMIN)
    assert rules.remove(state(), OWNER, ADMIN) is not None
    assert rules.remove(state(), OWNER, GONE) is None  # already gone


def test_removing_yourself_is_leaving_and_an_owner_hands_over() -> None:
    plan = rules.remove(state(), OWNER, OWNER)
    assert plan is not None
    assert plan.action == Action.LEFT
    assert plan.roles == {ADMIN: "owner"}
    assert plan.recipients(state()) == {OWNER, ADMIN, MEMBER}
    only_member = GroupState("g:1", "x", 1, 1, {OWNER: MemberRow("owner", 1, None)})
    assert rules.leave(only_member, OWNER).roles == {}


def test_only_the_owner_changes_roles() -> None:
    plan = rules.set_role(state(), OWNER, MEMBER, "admin")
    assert plan is not None
    assert (plan.action, plan.roles) == (Action.ROLE_CHANGED, {MEMBER: "admin"})
    handover = rules.set_role(state(), OWNER, MEMBER, "owner")
    assert handover is not None
    assert handover.roles == {MEMBER: "owner", OWNER: "admin"}
    with pytest.raises(PermissionDenied):
        rules.set_role(state(), ADMIN, MEMBER, "admin")
    with pytest.raises(InvalidArgument):
        rules.set_role(state(), OWNER, MEMBER, "king")
    with pytest.raises(NotFound):
        rules.set_role(state(), OWNER, GONE, "admin")
    with pytest.raises(FailedPrecondition):
        rules.set_role(state(), OWNER, OWNER, "member")
    assert rules.set_role(state(), OWNER, ADMIN, "admin") is None


def test_a_group_that_does_not_exist_is_not_found() -> None:
    with pytest.raises(NotFound):
        rules.add(GroupState("g:404", "", 0, 0, {}), OWNER, [MEMBER], maximum=10)


def test_a_change_concerns_the_members_and_whoever_it_removed() -> None:
    assert state().concerned_by(25) == {OWNER, ADMIN, MEMBER, GONE}
    assert state().concerned_by(99) == {OWNER, ADMIN, MEMBER}
