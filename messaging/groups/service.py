"""The GroupService gRPC servicer: checks each request, then hands it to ``ChatChanges``.

The rules (who may do what) are ``messaging/groups/rules.py``; the mechanics (claim, fence,
write, log entry) are ``messaging/groups/changes.py``. This module only translates.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from chatlib import errors, grpc_auth, tokens
from chatlib.chat_ids import GROUP
from chatlib.config_sections import Groups
from chatlib.errors import InvalidArgument
from chatlib.live_config import LiveSection
from messaging.groups import rules as group_rules
from messaging.groups.changes import Changed, ChatChanges, Planner
from messaging.send.sender import check_idempotency_key
from protos.chat.v1 import groups_pb2, groups_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]


class GroupService(groups_pb2_grpc.GroupServiceServicer):
    def __init__(
        self, changes: ChatChanges, verifier: tokens.Verifier, groups: LiveSection[Groups]
    ) -> None:
        self._changes = changes
        self._verifier = verifier
        self._groups = groups

    @errors.handler
    async def CreateGroup(
        self, request: groups_pb2.CreateGroupRequest, context: Context
    ) -> groups_pb2.Group:
        actor = self._user(context)
        _request_id(request.client_request_id)
        group_rules.check_name(request.name)
        members = list(request.member_ids)
        if len(members) > group_rules.MAX_PER_CALL:
            raise InvalidArgument(
                f"member_ids names {len(members)} users; at most {group_rules.MAX_PER_CALL}"
            )
        if any(not m for m in members):
            raise InvalidArgument("member_ids must not contain 0")
        changed = await self._changes.create(
            actor, request.name, members, request.client_request_id
        )
        return _group(changed)

    @errors.handler
    async def RenameGroup(
        self, request: groups_pb2.RenameGroupRequest, context: Context
    ) -> groups_pb2.Group:
        def planner(actor: int) -> Planner:
            group_rules.check_name(request.name)
            return lambda state: group_rules.rename(state, actor, request.name)

        return await self._change(context, request.chat_id, request.client_request_id, planner)

    @errors.handler
    async def AddMembers(
        self, request: groups_pb2.AddMembersRequest, context: Context
    ) -> groups_pb2.Group:
        def planner(actor: int) -> Planner:
            users = list(request.user_ids)
            if not users or len(users) > group_rules.MAX_PER_CALL or any(not u for u in users):
                raise InvalidArgument(
                    f"user_ids must name 1-{group_rules.MAX_PER_CALL} users, none of them 0"
                )
            maximum = self._groups.get().max_members
            return lambda state: group_rules.add(state, actor, users, maximum)

        return await self._change(context, request.chat_id, request.client_request_id, planner)

    @errors.handler
    async def RemoveMember(
        self, request: groups_pb2.RemoveMemberRequest, context: Context
    ) -> groups_pb2.Group:
        def planner(actor: int) -> Planner:
            if not request.user_id:
                raise InvalidArgument("user_id is required")
            return lambda state: group_rules.remove(state, actor, request.user_id)

        return await self._change(context, request.chat_id, request.client_request_id, planner)

    @errors.handler
    async def LeaveGroup(
        self, request: groups_pb2.LeaveGroupRequest, context: Context
    ) -> groups_pb2.Group:
        def planner(actor: int) -> Planner:
            return lambda state: group_rules.leave(state, actor)

        return await self._change(context, request.chat_id, request.client_request_id, planner)

    @errors.handler
    async def SetRole(
        self, request: groups_pb2.SetRoleRequest, context: Context
    ) -> groups_pb2.Group:
        def planner(actor: int) -> Planner:
            if not request.user_id:
                raise InvalidArgument("user_id is required")
            if request.role not in group_rules.ROLES:
                raise InvalidArgument(
                    f"role must be one of {', '.join(group_rules.ROLES)}, not {request.role[:20]!r}"
                )
            return lambda state: group_rules.set_role(state, actor, request.user_id, request.role)

        return await self._change(context, request.chat_id, request.client_request_id, planner)

    @errors.handler
    async def GetGroup(
        self, request: groups_pb2.GetGroupRequest, context: Context
    ) -> groups_pb2.Group:
        reader = self._user(context)
        _chat_id(request.chat_id)
        return _group(Changed(await self._changes.load(request.chat_id, reader), 0))

    async def _change(
        self,
        context: Context,
        chat_id: str,
        request_id: str,
        planner: Callable[[int], Planner],
    ) -> groups_pb2.Group:
        """A change to an existing group: the caller, the ids, the request's own checks
        (``planner``, given the caller), then the change."""
        actor = self._user(context)
        _chat_id(chat_id)
        _request_id(request_id)
        plan = planner(actor)
        return _group(await self._changes.change(actor, chat_id, request_id, plan))

    def _user(self, context: Context) -> int:
        return grpc_auth.user_claims(context, self._verifier).user_id


def _group(changed: Changed) -> groups_pb2.Group:
    state = changed.group
    return groups_pb2.Group(
        chat_id=state.chat_id,
        name=state.name,
        version=state.version,
        change_id=changed.change_id,
        members=[
            groups_pb2.Member(user_id=user, role=row.role or "", since_id=row.since_id)
            for user, row in state.ordered_members()
        ],
    )


def _chat_id(chat_id: str) -> None:
    if not chat_id:
        raise InvalidArgument("chat_id is required")
    if not GROUP.fullmatch(chat_id):
        raise InvalidArgument(f"chat_id {chat_id[:64]!r} is not a group's id (g:<digits>)")


def _request_id(request_id: str) -> None:
    check_idempotency_key(request_id, "client_request_id")
