"""The history gRPC service: chat lists and history pages for users, the user registry for
the BFF."""

from __future__ import annotations

import re

import grpc
from opentelemetry import trace

from chatlib import errors, grpc_auth, tokens, user_records
from chatlib.config_sections import Limits
from chatlib.ids import Snowflake, unsigned
from chatlib.live_config import LiveSection
from history import search_terms
from history.store import HistoryStore
from history.users import UserRegistry
from protos.chat.v1 import history_pb2, history_pb2_grpc

tracer = trace.get_tracer(__name__)
Context = grpc.aio.ServicerContext[object, object]


class HistoryService(history_pb2_grpc.HistoryServiceServicer):
    def __init__(
        self,
        store: HistoryStore,
        users: UserRegistry,
        ids: Snowflake,
        verifier: tokens.Verifier,
        limits: LiveSection[Limits],
    ) -> None:
        self._store = store
        self._users = users
        self._ids = ids
        self._verifier = verifier
        self._limits = limits

    @errors.handler
    async def ListChats(
        self, request: history_pb2.ListChatsRequest, context: Context
    ) -> history_pb2.ListChatsResponse:
        user = self._user(context)
        limit = _limit(request.limit, 100, 1000)
        after = _chat_cursor(request.cursor) if request.cursor else None
        chats, more = await self._store.chats_of(user, limit, after)
        unread = await self._store.unread_counts(chats, user)
        last = chats[-1] if chats and more else None
        return history_pb2.ListChatsResponse(
            next_cursor=f"{last.last_message_id}.{last.chat_id}" if last else "",
            chats=[
                history_pb2.ChatSummary(
                    chat_id=chat.chat_id,
                    kind=chat.kind,
                    member_ids=sorted(chat.member_ids),
                    last_message_id=chat.last_message_id,
                    last_preview=chat.last_preview,
                    last_sender_id=chat.last_sender_id,
                    unread_count=count,
                    name=chat.name,
                    member=not chat.visible_until,
                )
                for chat, count in zip(chats, unread, strict=True)
            ],
        )

    @errors.handler
    async def GetHistory(
        self, request: history_pb2.GetHistoryRequest, context: Context
    ) -> history_pb2.GetHistoryResponse:
        user = self._user(context)
        _check_chat_id(request.chat_id)
        limits = self._limits.get()
        limit = _limit(request.limit, limits.history_page_default, limits.history_page_max)
        window = await self._window(request.chat_id, user)
        page = self._store.page(
            request.chat_id,
            before_id=request.before_id,
            after_id=request.after_id,
            limit=limit,
            window=window,
            viewer=user,
        )
        if trace.get_current_span().is_recording():
            with tracer.start_as_current_span(
                "history.get_page",
                attributes={"db.system": "cassandra", "chat.id": request.chat_id},
            ):
                messages, more = await page
        else:
            messages, more = await page
        return history_pb2.GetHistoryResponse(messages=messages, has_more=more)

    @errors.handler
    async def SearchMessages(
        self, request: history_pb2.SearchMessagesRequest, context: Context
    ) -> history_pb2.SearchMessagesResponse:
        user = self._user(context)
        _check_chat_id(request.chat_id)
        if len(request.query) > MAX_QUERY_CHARS:
            raise errors.InvalidArgument(f"query is longer than {MAX_QUERY_CHARS} characters")
        if not request.query:
            raise errors.InvalidArgument("query is required: the words to find")
        limits = self._limits.get()
        limit = _limit(request.limit, limits.history_page_default, limits.history_page_max)
        window = await self._window(request.chat_id, user)
        # Punctuation alone finds nothing; words past the first MAX_QUERY_WORDS are not asked.
        query = search_terms.words(request.query, search_terms.MAX_QUERY_WORDS)
        if not query:
            return history_pb2.SearchMessagesResponse()
        with tracer.start_as_current_span(
            "history.search", attributes={"db.system": "cassandra", "chat.id": request.chat_id}
        ):
            messages, more = await self._store.search(
                request.chat_id,
                query,
                before_id=request.before_id,
                limit=limit,
                window=window,
                viewer=user,
            )
        return history_pb2.SearchMessagesResponse(messages=messages, has_more=more)

    @errors.handler
    async def GetReaders(
        self, request: history_pb2.GetReadersRequest, context: Context
    ) -> history_pb2.GetReadersResponse:
        user = self._user(context)
        _check_chat_id(request.chat_id)
        if not request.message_id:
            raise errors.InvalidArgument("message_id is required")
        await self._window(request.chat_id, user)
        found = await self._store.readers(request.chat_id, request.message_id)
        response = history_pb2.GetReadersResponse()
        for reader, read, received in found:
            mark = history_pb2.Reader(user_id=reader, read_up_to=read, delivered_up_to=received)
            (response.readers if read >= request.message_id else response.delivered).append(mark)
        return response

    async def _window(self, chat_id: str, user: int) -> tuple[int, int]:
        """What of the chat the user may read: (from, until) for groups, everything (0, 0)
        for a direct chat of theirs; NotFound / PermissionDenied otherwise."""
        if chat_id.startswith("g:"):
            # Members read from the change that added them; former members up to their
            # removal (group_members, which messaging writes before a change is answered).
            return await self._store.group_window(chat_id, user)
        chat = await self._store.chat(chat_id)
        if chat is None:
            raise errors.NotFound(f"chat {chat_id!r} does not exist")
        if user not in chat.member_ids:
            raise errors.PermissionDenied(f"you are not a member of chat {chat_id!r}")
        return (0, 0)

    @errors.handler
    async def CreateUser(
        self, request: history_pb2.CreateUserRequest, context: Context
    ) -> history_pb2.User:
        self._service(context)
        if not 0 < len(request.username) <= MAX_USERNAME or not request.password_hash:
            raise errors.InvalidArgument(
                f"username (1-{MAX_USERNAME} characters) and password_hash are required"
            )
        user_id = self._ids.next_id()
        if not await self._users.create(user_id, request.username, request.password_hash):
            raise errors.AlreadyExists(f"username {request.username!r} is taken")
        return history_pb2.User(user_id=user_id, username=request.username)

    @errors.handler
    async def FindUser(
        self, request: history_pb2.FindUserRequest, context: Context
    ) -> history_pb2.User:
        is_service = self._caller(context).subject == tokens.SERVICE_SUBJECT
        key = request.WhichOneof("key")
        if key == "username":
            if not 0 < len(request.username) <= MAX_USERNAME:
                raise errors.InvalidArgument(f"username must be 1-{MAX_USERNAME} characters")
            row = await self._store.user_by_name(request.username)
        elif key == "user_id":
            if not request.user_id:
                raise errors.InvalidArgument("user_id is required")
            row = await self._store.user_by_id(request.user_id)
        else:
            raise errors.InvalidArgument("give username or user_id")
        if row is None:
            raise errors.NotFound("no such user")
        return history_pb2.User(
            user_id=row.user_id,
            username=row.username,
            password_hash=row.password_hash if is_service else "",
            display_name=row.display_name or "",
            avatar_id=unsigned(row.avatar_id or 0),
        )

    @errors.handler
    async def RecordOpenedChat(
        self, request: history_pb2.RecordOpenedChatRequest, context: Context
    ) -> history_pb2.RecordOpenedChatResponse:
        self._messaging(context)
        match = DIRECT.fullmatch(request.chat_id)
        if not match or int(match[1]) >= int(match[2]) or not request.opened_id:
            raise errors.InvalidArgument("chat_id must be d:<low>:<high> and opened_id set")
        await self._store.record_opened(request.chat_id, request.opened_id)
        return history_pb2.RecordOpenedChatResponse()

    @errors.handler
    async def GetMessage(
        self, request: history_pb2.GetMessageRequest, context: Context
    ) -> history_pb2.GetMessageResponse:
        self._messaging(context)
        _check_chat_id(request.chat_id)
        if not request.message_id:
            raise errors.InvalidArgument("message_id is required")
        found = await self._store.message(request.chat_id, request.message_id)
        return history_pb2.GetMessageResponse(found=found is not None, message=found)

    @errors.handler
    async def ListMemberships(
        self, request: history_pb2.ListMembershipsRequest, context: Context
    ) -> history_pb2.ListMembershipsResponse:
        self._messaging(context)
        if not request.user_id:
            raise errors.InvalidArgument("user_id is required")
        found = await self._store.memberships(request.user_id)
        return history_pb2.ListMembershipsResponse(
            memberships=[
                history_pb2.Membership(chat_id=chat_id, kind=kind, left=left)
                for chat_id, kind, left in found
            ]
        )

    @errors.handler
    async def GetUsers(
        self, request: history_pb2.GetUsersRequest, context: Context
    ) -> history_pb2.GetUsersResponse:
        self._caller(context)
        if len(request.user_ids) > MAX_USERS_ASKED:
            raise errors.InvalidArgument(f"user_ids names more than {MAX_USERS_ASKED} users")
        found = await self._store.usernames(list(request.user_ids))
        return history_pb2.GetUsersResponse(
            users=[
                history_pb2.User(user_id=u, username=name, display_name=shown, avatar_id=avatar)
                for u, (name, shown, avatar) in found.items()
            ]
        )

    @errors.handler
    async def UpdateUser(
        self, request: history_pb2.UpdateUserRequest, context: Context
    ) -> history_pb2.User:
        subject = self._caller(context).subject
        if subject not in (tokens.SERVICE_SUBJECT, tokens.MESSAGING_SUBJECT):
            raise errors.PermissionDenied("only the BFF and messaging may change users")
        if not request.user_id:
            raise errors.InvalidArgument("user_id is required")
        shown = request.display_name if request.HasField("display_name") else None
        if shown is not None:
            user_records.check_display_name(shown)
        record = await self._users.update(
            request.user_id,
            display_name=shown,
            password_hash=request.password_hash,
            avatar_id=request.avatar_id if request.HasField("avatar_id") else None,
        )
        return history_pb2.User(
            user_id=record.user_id,
            username=record.username,
            display_name=record.display_name,
            avatar_id=record.avatar_id,
        )

    def _caller(self, context: Context) -> tokens.Claims:
        return grpc_auth.claims(context, self._verifier)

    def _user(self, context: Context) -> int:
        return grpc_auth.user_claims(context, self._verifier).user_id

    def _service(self, context: Context) -> None:
        if self._caller(context).subject != tokens.SERVICE_SUBJECT:
            raise errors.PermissionDenied("only the BFF may manage users")

    def _messaging(self, context: Context) -> None:
        if self._caller(context).subject != tokens.MESSAGING_SUBJECT:
            raise errors.PermissionDenied("only messaging may ask this")


MAX_USERNAME = 64
MAX_USERS_ASKED = 1000
DIRECT = re.compile(r"d:([0-9]{1,19}):([0-9]{1,19})")
MAX_CHAT_ID = 64
MAX_QUERY_CHARS = 200


def _check_chat_id(chat_id: str) -> None:
    if not 0 < len(chat_id) <= MAX_CHAT_ID:
        raise errors.InvalidArgument(f"chat_id must be 1-{MAX_CHAT_ID} characters")


CHAT_CURSOR = re.compile(r"([0-9]{1,20})\.((?:d|g):[0-9:]{1,45})")


def _chat_cursor(cursor: str) -> tuple[int, str]:
    """A chat list cursor: "<last message id>.<chat id>" of the previous page's last chat."""
    match = CHAT_CURSOR.fullmatch(cursor)
    if not match:
        raise errors.InvalidArgument("cursor is not a chat list cursor (give next_cursor back)")
    return int(match[1]), match[2]


def _limit(value: int, default: int, maximum: int) -> int:
    if value < 0 or value > maximum:
        raise errors.InvalidArgument(f"limit must be between 1 and {maximum}")
    return value or default
