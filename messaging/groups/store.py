"""The ``group_members`` table, which only messaging writes (``messaging/groups.py``).

One partition per group: static columns for the group, one row per person who ever was a
member. A change is one conditional batch on the group's version, so it applies whole or not
at all, and only on top of the state it was planned on.
"""

from __future__ import annotations

from typing import Any

from cassandra.query import BatchStatement, BatchType, BoundStatement

from chatlib import deliveries
from chatlib.cassandra import AsyncSession
from chatlib.errors import Unavailable
from chatlib.ids import signed, unsigned, write_time
from messaging.groups.rules import Action, GroupState, MemberRow, Plan
from protos.chat.v1 import envelope_pb2

# The members and the version in one read of the partition (a change writes them in one
# batch on the partition, which applies in isolation). The static blob of the last change is
# read apart: a result repeats static cells in every row, and a 1,000-member group's creation
# (its members named in words, about 27 KB) repeated per member made responses of 9-27 MB,
# which exhausted Cassandra's direct memory (seen: OutOfDirectMemoryError, the node gone).
_LOAD = "SELECT user_id, role, since_id, until_id, version FROM group_members WHERE chat_id = ?"
_HEAD = (
    "SELECT version, name, last_change_id, last_change FROM group_members WHERE chat_id = ? LIMIT 1"
)
#: Reads of a group that a change keeps overtaking before its load gives up.
LOAD_ATTEMPTS = 5
_GROUP = (
    "UPDATE group_members SET name = ?, version = ?, last_change_id = ?, last_change = ?"
    " WHERE chat_id = ? IF version = ?"
)
_CREATE = (
    "UPDATE group_members SET name = ?, version = ?, last_change_id = ?, last_change = ?"
    " WHERE chat_id = ? IF version = null"
)
_JOIN = (
    "UPDATE group_members SET role = ?, since_id = ?, until_id = null"
    " WHERE chat_id = ? AND user_id = ?"
)
_LEAVE = "UPDATE group_members SET role = null, until_id = ? WHERE chat_id = ? AND user_id = ?"
_ROLE = "UPDATE group_members SET role = ? WHERE chat_id = ? AND user_id = ?"


_REPLAY_GROUP = (
    "UPDATE group_members USING TIMESTAMP ? SET name = ?, version = ?, last_change_id = ?,"
    " last_change = ? WHERE chat_id = ?"
)
_REPLAY_JOIN = (
    "UPDATE group_members USING TIMESTAMP ? SET role = ?, since_id = ?, until_id = null"
    " WHERE chat_id = ? AND user_id = ?"
)
_REPLAY_LEAVE = (
    "UPDATE group_members USING TIMESTAMP ? SET role = null, until_id = ?"
    " WHERE chat_id = ? AND user_id = ?"
)
_REPLAY_ROLE = (
    "UPDATE group_members USING TIMESTAMP ? SET role = ? WHERE chat_id = ? AND user_id = ?"
)
JOINING = (Action.CREATED, Action.ADDED)
LEAVING = (Action.REMOVED, Action.LEFT)


class GroupStore:
    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def load(self, chat_id: str) -> GroupState:
        """The group as Cassandra has it; version 0 if it does not exist."""
        for _ in range(LOAD_ATTEMPTS):
            rows = await self._db.execute(_LOAD, (chat_id,))
            if not rows or rows[0].version is None:
                return GroupState(chat_id, "", 0, 0, {})
            heads = await self._db.execute(_HEAD, (chat_id,))
            if heads and heads[0].version == rows[0].version:
                return self._state(chat_id, rows, heads[0])
            # A change landed between the two reads: read both again.
        raise Unavailable(f"the members of chat {chat_id!r} are changing; retry in a moment")

    @staticmethod
    def _state(chat_id: str, rows: list[Any], first: Any) -> GroupState:
        members = {
            unsigned(row.user_id): MemberRow(
                row.role,
                unsigned(row.since_id or 0),
                unsigned(row.until_id) if row.until_id is not None else None,
            )
            for row in rows
            if row.user_id is not None
        }
        return GroupState(
            chat_id,
            first.name or "",
            first.version,
            unsigned(first.last_change_id or 0),
            members,
            first.last_change or b"",
        )

    async def apply(self, before: GroupState, plan: Plan, change_id: int, entry: bytes) -> bool:
        """Write the change (and ``entry``, its log entry) on top of ``before``; False if the
        group is no longer at that version (another change came first)."""
        chat_id = before.chat_id
        change = signed(change_id)
        if before.version == 0:
            head = self._db.bind(_CREATE, (plan.name, 1, change, entry, chat_id))
        else:
            head = self._db.bind(
                _GROUP,
                (plan.name, before.version + 1, change, entry, chat_id, before.version),
            )
        batch = BatchStatement(batch_type=BatchType.LOGGED)
        batch.add(head)
        for user, role in plan.joining.items():
            batch.add(self._db.bind(_JOIN, (role, change, chat_id, signed(user))))
        for user in plan.leaving:
            batch.add(self._db.bind(_LEAVE, (change, chat_id, signed(user))))
        for user, role in plan.roles.items():
            batch.add(self._db.bind(_ROLE, (role, chat_id, signed(user))))
        rows: list[Any] = await self._db.run(self._db.session.execute_async(batch))
        return bool(rows and rows[0][0])

    def replay(self, delivery: envelope_pb2.Delivery) -> list[tuple[BoundStatement, int]]:
        """The writes that redo a change from its log record (``python -m history rebuild``):
        each at the change's own time, so records applied in any order end as the live
        writes did."""
        change = delivery.change
        chat_id, change_id = delivery.chat_id, signed(delivery.message_id)
        at = write_time(delivery.message_id)
        entry = deliveries.message_of(delivery).SerializeToString(deterministic=True)
        bind = self._db.bind
        found = [
            (bind(_REPLAY_GROUP, (at, change.name, change.version, change_id, entry, chat_id)), 500)
        ]
        subjects = set(change.user_ids)
        for user, role in change.roles.items():
            if change.action in JOINING and user in subjects:
                params: tuple[Any, ...] = (at, role, change_id, chat_id, signed(user))
                found.append((bind(_REPLAY_JOIN, params), 80))
            else:
                found.append((bind(_REPLAY_ROLE, (at, role, chat_id, signed(user))), 80))
        if change.action in LEAVING:
            for user in subjects:
                params = (at, change_id, chat_id, signed(user))
                found.append((bind(_REPLAY_LEAVE, params), 80))
        return found
