"""Changes to chats as entries of the chat's log: groups created, renamed, members added,
removed, leaving, roles; and direct chats opened.

A group change goes through the send path (``Sender.submit``) like a message, so it has the
same guarantees: the caller's ``client_request_id`` is its idempotency claim, it is answered
once Kafka holds a copy for everyone it concerns, and a retry after a crash completes it with
only the missing copies. What differs is ``prepare``, run once the claim is held:

1. read the group from Cassandra and plan the change on it (``messaging/groups/rules.py``);
2. pass the membership fence (``messaging/groups/fence.py``) with the change's id: from here on no
   send is admitted under the old membership, and no id below the change's is admitted;
3. write the change to ``group_members`` as one conditional batch on the version (the log
   entry itself is kept beside it, so a retry can produce it again if this process dies).

Sends to the group wait between 2 and 3 (a few milliseconds). If the process dies there,
the next send that waits longer than ``STALLED_SECONDS`` undoes step 2.

Direct chats are opened by writing ``chats`` (``ChatDirectory.open_direct``); the entry for
the members' chat lists (``OPENED``) is produced without a claim: applying it twice is the
same as once, and streams and history do not show it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from chatlib import deliveries
from chatlib.chat_ids import direct_chat_id
from chatlib.config_sections import Groups
from chatlib.errors import NotFound, PermissionDenied, Unavailable
from chatlib.leases import LeaseLost, WorkerLease
from chatlib.live_config import LiveSection
from messaging.groups import rules as group_rules
from messaging.groups.fence import Fence
from messaging.groups.rules import Action, GroupState, Plan
from messaging.groups.store import GroupStore
from messaging.history_api import HistoryApi
from messaging.send.admission import Admission, Claim, Owner
from messaging.send.sender import Outgoing, Sender
from protos.chat.v1 import common_pb2, envelope_pb2

logger = logging.getLogger(__name__)

#: The claim key's chat for a group being created (its id comes from the claim).
CREATING = "g:new"
#: How long a change waits for another change to the same group before it gives up.
CHANGE_WAIT_SECONDS = 4.0
#: Names spelled out in a change's text; the rest are counted.
NAMED = 3

Planner = Callable[[GroupState], Plan | None]
Delivery = envelope_pb2.Delivery


@dataclass(frozen=True)
class Changed:
    """A group after a change call, and the id of the change (0 if nothing changed)."""

    group: GroupState
    change_id: int


class UserNames:
    """Usernames by id, for the text of changes ("alice added carol"); names never change."""

    def __init__(self, history: HistoryApi) -> None:
        self._history = history
        self._names: dict[int, str] = {}

    async def lookup(self, users: Iterable[int]) -> dict[int, str]:
        """Names of those of ``users`` that exist (ids of nobody are left out)."""
        wanted = sorted(set(users))
        missing = [u for u in wanted if u not in self._names]
        if missing:
            self._names.update(await self._history.usernames(missing))
        if len(self._names) > 100_000:
            self._names.clear()
        return {u: self._names[u] for u in wanted if u in self._names}


class ChatChanges:
    def __init__(
        self,
        *,
        sender: Sender,
        admission: Admission,
        store: GroupStore,
        fence: Fence,
        names: UserNames,
        lease: WorkerLease,
        groups: LiveSection[Groups],
        history: HistoryApi,
    ) -> None:
        self._sender = sender
        self._admission = admission
        self._store = store
        self._fence = fence
        self._names = names
        self._lease = lease
        self._groups = groups
        self._history = history

    async def load(self, chat_id: str, reader: int) -> GroupState:
        """The group as its member ``reader`` may see it."""
        state = await self._store.load(chat_id)
        if state.version == 0:
            raise NotFound(f"chat {chat_id!r} does not exist")
        if reader not in state.members:
            raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
        return state

    async def create(
        self, actor: int, name: str, members: Sequence[int], request_id: str
    ) -> Changed:
        maximum = self._groups.get().max_members
        plan = group_rules.create(actor, name, members, maximum)
        await self._check_users(plan.joining)

        async def prepare(claim: Claim) -> tuple[Outgoing, Claim] | None:
            chat_id = f"g:{claim.message_id}"
            return await self._prepare(actor, chat_id, request_id, lambda _: plan, claim)

        accepted = await self._sender.submit(
            Outgoing(_unplanned(actor, CREATING, request_id), frozenset(), prepare=prepare)
        )
        chat_id = f"g:{accepted.message_id}"
        return Changed(await self._store.load(chat_id), accepted.message_id)

    async def change(self, actor: int, chat_id: str, request_id: str, planner: Planner) -> Changed:
        """Make the change ``planner`` plans on the group. It is planned on the current state
        first, so a refusal costs no claim; a request that changes nothing still goes through
        the claim, so its retry answers like the first call."""
        before = await self._store.load(chat_id)
        plan = planner(before)
        if plan is not None:
            await self._check_users(plan.joining)
        prepare = functools.partial(self._prepare, actor, chat_id, request_id, planner)
        accepted = await self._sender.submit(
            Outgoing(_unplanned(actor, chat_id, request_id), frozenset(), prepare=prepare)
        )
        return Changed(await self._store.load(chat_id), accepted.message_id)

    async def opened(self, actor: int, peer: int) -> None:
        """Tell both members' chat lists of a direct chat (idempotent, no claim)."""
        members = frozenset({actor, peer})
        change = common_pb2.ChatChange(action=Action.OPENED, user_ids=sorted(members))
        entry = Delivery(
            chat_id=direct_chat_id(actor, peer), kind="direct", sender_id=actor, change=change
        )
        outgoing = Outgoing(entry, members)
        opened_id = self._mint()
        await self._sender.publish(outgoing, opened_id)
        try:
            await self._history.record_opened(outgoing.chat_id, opened_id)
        except Unavailable as exc:
            # The record is in the log: the chat lists show the chat once the writer gets it.
            logger.warning("telling history of %s failed: %s", outgoing.chat_id, exc)

    async def _prepare(
        self, actor: int, chat_id: str, request_id: str, planner: Planner, claim: Claim
    ) -> tuple[Outgoing, Claim] | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            state = await self._store.load(chat_id)
            if state.version and state.last_change_id == claim.message_id:
                # Written by an earlier attempt that died before Kafka had every copy.
                kept = common_pb2.Message.FromString(state.last_change)
                return Outgoing(
                    deliveries.entry_of(kept, "group"),
                    state.concerned_by(kept.message_id),
                    kept.change.version,
                ), claim
            plan = planner(state)
            if plan is None:
                return None
            owner = self._owner()
            outcome = await self._fence.change(
                chat_id, state.version, claim.message_id, owner.encode()
            )
            if outcome.floor is not None:
                claim = await self._reissue(claim, outcome.floor, owner)
                continue
            if outcome.unknown or (outcome.version is not None and outcome.version < state.version):
                await self._fence.seed(chat_id, state.version, state.last_change_id)
                continue
            if not outcome.passed:
                # Another change to this group is being written: plan again on top of it.
                if loop.time() - started > CHANGE_WAIT_SECONDS:
                    raise Unavailable(f"chat {chat_id!r} is being changed; retry in a moment")
                await asyncio.sleep(0.01)
                continue
            entry = await self._entry(actor, chat_id, request_id, state, plan)
            # The log entry is kept with the change: a retry after a crash produces it again.
            kept = deliveries.message_of(deliveries.stamped(entry, claim.message_id))
            try:
                applied = await self._store.apply(
                    state, plan, claim.message_id, kept.SerializeToString(deterministic=True)
                )
            except Exception as exc:  # noqa: BLE001 - decided below, then reported
                # A timed-out conditional write may still have been applied: look before
                # undoing the fence (a failure here leaves the claim for a retry to settle).
                if (await self._store.load(chat_id)).last_change_id != claim.message_id:
                    await self._fence.rollback(chat_id, state.version, claim.message_id)
                    raise Unavailable(f"the change could not be written ({exc}); retry") from None
                applied = True
            if not applied:
                await self._fence.rollback(chat_id, state.version, claim.message_id)
                raise Unavailable(f"chat {chat_id!r} changed meanwhile; retry")
            return Outgoing(entry, plan.recipients(state), entry.change.version), claim

    async def _reissue(self, claim: Claim, floor: int, owner: Owner) -> Claim:
        self._sender.ids.advance_past(floor)
        reissued = await self._admission.reissue(claim, self._mint(), owner)
        if reissued is None:
            raise Unavailable("the change is being made by another server; retry")
        return reissued

    def _owner(self) -> Owner:
        try:
            return Owner(self._lease.check(), self._lease.token)
        except LeaseLost as exc:
            raise Unavailable(f"this server cannot make changes right now: {exc}") from None

    def _mint(self) -> int:
        try:
            return self._sender.ids.next_id()
        except LeaseLost as exc:
            raise Unavailable(f"this server cannot assign ids right now: {exc}") from None

    async def _check_users(self, users: Iterable[int]) -> None:
        wanted = set(users)
        found = await self._names.lookup(wanted)
        unknown = sorted(wanted - set(found))
        if unknown:
            raise NotFound(f"user {unknown[0]} does not exist")

    async def _entry(
        self, actor: int, chat_id: str, request_id: str, state: GroupState, plan: Plan
    ) -> Delivery:
        """The change's entry of the group's log."""
        change = common_pb2.ChatChange(
            action=plan.action,
            name=plan.name,
            user_ids=list(plan.subjects),
            role=plan.role,
            version=state.version + 1,
            roles={**plan.joining, **plan.roles},
        )
        names = await self._names.lookup([actor, *plan.subjects[:NAMED]])
        return Delivery(
            chat_id=chat_id,
            kind="group",
            sender_id=actor,
            body=describe(actor, plan, state.name, names),
            client_message_id=request_id,
            change=change,
        )


def _unplanned(actor: int, chat_id: str, request_id: str) -> Delivery:
    """A change before it is planned: enough for its claim (``prepare`` makes the entry)."""
    return Delivery(chat_id=chat_id, kind="group", sender_id=actor, client_message_id=request_id)


def describe(actor: int, plan: Plan, old_name: str, names: dict[int, str]) -> str:
    """The change in words, as history and clients show it."""
    who = names.get(actor, str(actor))
    subjects = [names.get(u, str(u)) for u in plan.subjects[:NAMED] if u != actor]
    rest = len([u for u in plan.subjects if u != actor]) - len(subjects)
    listed = ", ".join(subjects) + (f" and {rest} more" if rest else "")
    if plan.action == Action.CREATED:
        return f"{who} created the group \u201c{plan.name}\u201d" + (
            f" with {listed}" if listed else ""
        )
    if plan.action == Action.RENAMED:
        return f"{who} renamed the group from \u201c{old_name}\u201d to \u201c{plan.name}\u201d"
    if plan.action == Action.ADDED:
        return f"{who} added {listed}"
    if plan.action == Action.REMOVED:
        return f"{who} removed {listed}"
    if plan.action == Action.LEFT:
        return f"{who} left"
    article = "the" if plan.role == group_rules.OWNER else "an" if plan.role == "admin" else "a"
    return f"{who} made {listed} {article} {plan.role}"
