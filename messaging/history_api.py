"""What messaging asks the history service. History owns these tables (messages, chat lists,
users); messaging never reads them itself, it calls history's gRPC API with its service
token. None of this is on the send path: it serves amendments of older messages, presence,
opening direct chats and the text of group changes."""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc

from chatlib import tokens
from chatlib.errors import Unavailable
from chatlib.grpc_auth import bearer_metadata
from protos.chat.v1 import common_pb2, history_pb2, history_pb2_grpc

#: A call to history gives up after this long.
DEADLINE_SECONDS = 5.0
#: The service token lives a minute; a new one is made after half of that.
TOKEN_SECONDS = 60


class HistoryApi:
    def __init__(
        self,
        stub: history_pb2_grpc.HistoryServiceAsyncStub,
        secret: str,
        deadline: float = DEADLINE_SECONDS,
    ) -> None:
        self._stub = stub
        self._secret = secret
        self._deadline = deadline
        self._token = ""
        self._token_at = 0.0

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        now = time.monotonic()
        if not self._token or now - self._token_at > TOKEN_SECONDS / 2:
            self._token = tokens.issue(self._secret, tokens.MESSAGING_SUBJECT, TOKEN_SECONDS)
            self._token_at = now
        return bearer_metadata(self._token)

    async def message(self, chat_id: str, message_id: int) -> common_pb2.Message | None:
        """An entry of the chat as history stored it, or None if it holds none with that id."""
        request = history_pb2.GetMessageRequest(chat_id=chat_id, message_id=message_id)
        try:
            found = await self._stub.GetMessage(
                request, metadata=self._metadata(), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable("the message", exc) from None
        return found.message if found.found else None

    async def memberships(self, user_id: int) -> list[history_pb2.Membership]:
        """The chats in the user's chat list."""
        request = history_pb2.ListMembershipsRequest(user_id=user_id)
        try:
            found = await self._stub.ListMemberships(
                request, metadata=self._metadata(), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(f"the chats of user {user_id}", exc) from None
        return list(found.memberships)

    async def usernames(self, user_ids: Iterable[int]) -> dict[int, str]:
        """The names of those of ``user_ids`` that exist."""
        return {user_id: user.username for user_id, user in (await self.users(user_ids)).items()}

    async def users(self, user_ids: Iterable[int]) -> dict[int, history_pb2.User]:
        """Those of ``user_ids`` that exist, with their profiles."""
        wanted = sorted(set(user_ids))
        found_users: dict[int, history_pb2.User] = {}
        for start in range(0, len(wanted), 1000):
            request = history_pb2.GetUsersRequest(user_ids=wanted[start : start + 1000])
            try:
                found = await self._stub.GetUsers(
                    request, metadata=self._metadata(), timeout=self._deadline
                )
            except grpc.aio.AioRpcError as exc:
                raise _unavailable("users", exc) from None
            found_users.update((user.user_id, user) for user in found.users)
        return found_users

    async def update_profile(
        self, user_id: int, display_name: str | None, avatar_id: int | None
    ) -> history_pb2.User:
        """Record the user's new profile (history owns users): what is not None changes."""
        request = history_pb2.UpdateUserRequest(
            user_id=user_id, display_name=display_name, avatar_id=avatar_id
        )
        try:
            return await self._stub.UpdateUser(
                request, metadata=self._metadata(), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(f"the profile of user {user_id}", exc) from None

    async def record_opened(self, chat_id: str, opened_id: int) -> None:
        """Both members' chat lists show a direct chat just opened."""
        request = history_pb2.RecordOpenedChatRequest(chat_id=chat_id, opened_id=opened_id)
        try:
            await self._stub.RecordOpenedChat(
                request, metadata=self._metadata(), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(f"recording {chat_id}", exc) from None


def _unavailable(what: str, exc: grpc.aio.AioRpcError) -> Unavailable:
    return Unavailable(f"the history service did not answer for {what} ({exc.code().name})")
