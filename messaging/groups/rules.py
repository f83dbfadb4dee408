"""Who may change a group, and what each change does: pure functions from the group's state to
a ``Plan`` (or None when the request changes nothing), so the rules are in one place and
tested without a cluster.

* The **owner** (one per group) may do everything, and is the only one who gives or takes
  the admin role or hands the group over (role "owner": the old owner becomes an admin).
* An **admin** may rename the group, add members, and remove members who are neither admin
  nor owner.
* A **member** may send, read, list the members, and leave.
* When the owner leaves, the longest-serving admin becomes owner (else the longest-serving
  member); when the last member leaves, the group is empty and stays so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from chatlib.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from protos.chat.v1 import common_pb2

Action = common_pb2.ChatChange.Action
OWNER, ADMIN, MEMBER = "owner", "admin", "member"
ROLES = (OWNER, ADMIN, MEMBER)
MAX_NAME = 100
#: Users one AddMembers call (or the initial member list) may name.
MAX_PER_CALL = 1000


@dataclass(frozen=True)
class MemberRow:
    """One person who is or was a member. ``role`` is None once they left or were removed."""

    role: str | None
    since_id: int
    until_id: int | None


@dataclass(frozen=True)
class GroupState:
    chat_id: str
    name: str
    #: 0 for a group that does not exist yet.
    version: int
    last_change_id: int
    rows: Mapping[int, MemberRow]
    #: The last change's log entry (a serialized chat.v1.Message).
    last_change: bytes = b""

    @property
    def members(self) -> frozenset[int]:
        return frozenset(user for user, row in self.rows.items() if row.role is not None)

    def role_of(self, user: int) -> str | None:
        row = self.rows.get(user)
        return row.role if row is not None else None

    def concerned_by(self, change_id: int) -> frozenset[int]:
        """Everyone change ``change_id`` concerned, read back after it was written: the members
        now and whoever it removed."""
        return self.members | frozenset(
            user for user, row in self.rows.items() if row.until_id == change_id
        )

    def ordered_members(self) -> list[tuple[int, MemberRow]]:
        """Current members, in the order they (last) joined."""
        current = [(user, row) for user, row in self.rows.items() if row.role is not None]
        return sorted(current, key=lambda item: (item[1].since_id, item[0]))


@dataclass(frozen=True)
class Plan:
    """A change to make: the log entry's fields and the rows it writes."""

    action: common_pb2.ChatChange.Action.ValueType
    name: str
    subjects: tuple[int, ...]
    role: str = ""
    #: Users who become members with the change (their window starts at it), and their role.
    joining: Mapping[int, str] = field(default_factory=dict)
    #: Users whose membership ends with the change.
    leaving: tuple[int, ...] = ()
    #: Members whose role changes.
    roles: Mapping[int, str] = field(default_factory=dict)

    def recipients(self, before: GroupState) -> frozenset[int]:
        """Everyone the change concerns: the members before it and after it."""
        return before.members | frozenset(self.joining)


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidArgument("name is required (1-100 characters, not blank)")
    if len(cleaned) > MAX_NAME or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in cleaned):
        raise InvalidArgument(f"name must be 1-{MAX_NAME} characters without control characters")
    return cleaned


def _acting_role(state: GroupState, actor: int) -> str:
    if state.version == 0:
        raise NotFound(f"chat {state.chat_id!r} does not exist")
    role = state.role_of(actor)
    if role is None:
        raise PermissionDenied(f"you are not a member of chat {state.chat_id!r}")
    return role


def _check_size(count: int, maximum: int) -> None:
    if count > maximum:
        raise FailedPrecondition(
            f"a group holds at most {maximum} members (groups.max_members); this change would"
            f" make it {count}"
        )


def create(actor: int, name: str, members: Iterable[int], maximum: int) -> Plan:
    others = sorted(set(members) - {actor})
    _check_size(len(others) + 1, maximum)
    joining = {actor: OWNER} | dict.fromkeys(others, MEMBER)
    return Plan(Action.CREATED, check_name(name), (actor, *others), joining=joining)


def rename(state: GroupState, actor: int, name: str) -> Plan | None:
    if _acting_role(state, actor) not in (OWNER, ADMIN):
        raise PermissionDenied("only the group's owner or an admin may rename it")
    cleaned = check_name(name)
    if cleaned == state.name:
        return None
    return Plan(Action.RENAMED, cleaned, ())


def add(state: GroupState, actor: int, users: Iterable[int], maximum: int) -> Plan | None:
    if _acting_role(state, actor) not in (OWNER, ADMIN):
        raise PermissionDenied("only the group's owner or an admin may add members")
    new = sorted(set(users) - state.members)
    if not new:
        return None  # all of them are members already: adding them again changes nothing
    _check_size(len(state.members) + len(new), maximum)
    return Plan(Action.ADDED, state.name, tuple(new), joining=dict.fromkeys(new, MEMBER))


def remove(state: GroupState, actor: int, user: int) -> Plan | None:
    role = _acting_role(state, actor)
    if user == actor:
        return leave(state, actor)
    target = state.role_of(user)
    if target is None:
        return None  # not a member (any more): nothing to remove
    if role == MEMBER or (role == ADMIN and target != MEMBER):
        raise PermissionDenied(
            "only the owner may remove admins; the owner or an admin may remove members"
        )
    return Plan(Action.REMOVED, state.name, (user,), leaving=(user,))


def leave(state: GroupState, actor: int) -> Plan:
    role = _acting_role(state, actor)
    roles: dict[int, str] = {}
    if role == OWNER:
        rest = [(user, row) for user, row in state.ordered_members() if user != actor]
        admins = [user for user, row in rest if row.role == ADMIN]
        heir = admins[0] if admins else (rest[0][0] if rest else None)
        if heir is not None:
            roles[heir] = OWNER
    return Plan(Action.LEFT, state.name, (actor,), leaving=(actor,), roles=roles)


def set_role(state: GroupState, actor: int, user: int, role: str) -> Plan | None:
    if role not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {role[:20]!r}")
    if _acting_role(state, actor) != OWNER:
        raise PermissionDenied("only the group's owner may change roles")
    current = state.role_of(user)
    if current is None:
        raise NotFound(f"user {user} is not a member of chat {state.chat_id!r}")
    if user == actor:
        if role == OWNER:
            return None
        raise FailedPrecondition(
            "the owner keeps the owner role until handing it over (set another member's role"
            " to owner) or leaving"
        )
    if current == role:
        return None
    roles = {user: role}
    if role == OWNER:
        roles[actor] = ADMIN
    return Plan(Action.ROLE_CHANGED, state.name, (user,), role=role, roles=roles)
