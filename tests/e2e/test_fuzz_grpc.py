"""The gRPC services against generated requests (hypothesis): any field value a client can put
in a request is answered with a status that names the problem (INVALID_ARGUMENT, NOT_FOUND,
PERMISSION_DENIED, ...), never INTERNAL or UNKNOWN, and never with a Python or Cassandra
exception text. Seeded and bounded, so a run is repeatable."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from chatlib import tokens
from protos.chat.v1 import (
    common_pb2,
    groups_pb2,
    groups_pb2_grpc,
    history_pb2,
    history_pb2_grpc,
    messaging_pb2,
    messaging_pb2_grpc,
)
from tests.e2e.conftest import BFF, PASSWORD, jwt_secret

HISTORY = "127.0.0.1:7201"
SEED = 20261123
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Statuses that mean "the server failed" rather than "the request was refused".
SERVER_FAILURES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
LEAKS = ("Traceback", "cassandra.", "Exception", "Error(")

texts = st.text(max_size=80) | st.sampled_from(
    ["", "d:1:2", "g:1", "d:2:1", "v1.0.5", "v1.99.1", "admin", "owner", "g:99999999999999999999"]
)
ids = st.integers(min_value=0, max_value=2**64 - 1)
int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1)
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _post(path: str, body: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - our own BFF
        f"{BFF}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own BFF
        return dict(json.load(response))


@pytest.fixture(scope="module")
def session() -> dict[str, Any]:
    name = f"grpcfuzz{uuid.uuid4().hex[:8]}"
    _post("/v1/users", {"username": name, "password": PASSWORD})
    return _post("/v1/sessions", {"username": name, "password": PASSWORD})


@pytest.fixture(scope="module")
def call(session: dict[str, Any]) -> Iterator[Callable[[Any], None]]:
    metadata = (("authorization", f"Bearer {session['access_token']}"),)
    channels = [grpc.insecure_channel(session["messaging_server"]), grpc.insecure_channel(HISTORY)]

    def check(invoke: Any) -> None:
        try:
            invoke(metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            assert code not in SERVER_FAILURES, f"{code}: {details}"
            assert not any(leak in details for leak in LEAKS), details

    check.messaging = messaging_pb2_grpc.MessagingServiceStub(channels[0])  # type: ignore[attr-defined]
    check.history = history_pb2_grpc.HistoryServiceStub(channels[1])  # type: ignore[attr-defined]
    check.groups = groups_pb2_grpc.GroupServiceStub(channels[0])  # type: ignore[attr-defined]
    yield check
    for channel in channels:
        channel.close()


@seed(SEED)
@FUZZ
@given(chat_id=texts, client_message_id=texts, body=texts)
def test_send(call: Any, chat_id: str, client_message_id: str, body: str) -> None:
    request = messaging_pb2.SendRequest(
        chat_id=chat_id, client_message_id=client_message_id, body=body
    )
    call(lambda md: call.messaging.Send(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(chat_id=texts, message_id=ids, text=texts, request_id=texts, remove=st.booleans())
def test_amend_any_message(
    call: Any, chat_id: str, message_id: int, text: str, request_id: str, remove: bool
) -> None:
    messaging = call.messaging
    edit = messaging_pb2.EditMessageRequest(
        chat_id=chat_id, message_id=message_id, body=text, client_request_id=request_id
    )
    call(lambda md: messaging.EditMessage(edit, metadata=md, timeout=10))
    delete = messaging_pb2.DeleteMessageRequest(
        chat_id=chat_id, message_id=message_id, client_request_id=request_id
    )
    call(lambda md: messaging.DeleteMessage(delete, metadata=md, timeout=10))
    react = messaging_pb2.ReactRequest(
        chat_id=chat_id,
        message_id=message_id,
        emoji=text,
        remove=remove,
        client_request_id=request_id,
    )
    call(lambda md: messaging.React(react, metadata=md, timeout=10))
    mark = messaging_pb2.MarkDeliveredRequest(chat_id=chat_id, message_id=message_id)
    call(lambda md: messaging.MarkDelivered(mark, metadata=md, timeout=10))
    typing = messaging_pb2.SetTypingRequest(chat_id=chat_id, stopped=remove)
    call(lambda md: messaging.SetTyping(typing, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(users=st.lists(ids, max_size=300))
def test_get_presence(call: Any, users: list[int]) -> None:
    request = messaging_pb2.GetPresenceRequest(user_ids=users)
    call(lambda md: call.messaging.GetPresence(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(name=texts, members=st.lists(ids, max_size=5), request_id=texts)
def test_create_group(call: Any, name: str, members: list[int], request_id: str) -> None:
    request = groups_pb2.CreateGroupRequest(
        name=name, member_ids=members, client_request_id=request_id
    )
    call(lambda md: call.groups.CreateGroup(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(chat_id=texts, user=ids, role=texts, name=texts, request_id=texts)
def test_change_any_group(
    call: Any, chat_id: str, user: int, role: str, name: str, request_id: str
) -> None:
    groups = call.groups
    for invoke in (
        lambda md: groups.AddMembers(
            groups_pb2.AddMembersRequest(
                chat_id=chat_id, user_ids=[user], client_request_id=request_id
            ),
            metadata=md,
            timeout=10,
        ),
        lambda md: groups.RemoveMember(
            groups_pb2.RemoveMemberRequest(
                chat_id=chat_id, user_id=user, client_request_id=request_id
            ),
            metadata=md,
            timeout=10,
        ),
        lambda md: groups.SetRole(
            groups_pb2.SetRoleRequest(
                chat_id=chat_id, user_id=user, role=role, client_request_id=request_id
            ),
            metadata=md,
            timeout=10,
        ),
        lambda md: groups.RenameGroup(
            groups_pb2.RenameGroupRequest(chat_id=chat_id, name=name, client_request_id=request_id),
            metadata=md,
            timeout=10,
        ),
        lambda md: groups.GetGroup(
            groups_pb2.GetGroupRequest(chat_id=chat_id), metadata=md, timeout=10
        ),
    ):
        call(invoke)


@seed(SEED)
@FUZZ
@given(peer_id=ids)
def test_open_direct_chat(call: Any, peer_id: int) -> None:
    request = messaging_pb2.OpenDirectChatRequest(peer_id=peer_id)
    call(lambda md: call.messaging.OpenDirectChat(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(user_id=ids, unblock=st.booleans())
def test_block_any_user(call: Any, user_id: int, unblock: bool) -> None:
    if unblock:
        request = messaging_pb2.UnblockUserRequest(user_id=user_id)
        call(lambda md: call.messaging.UnblockUser(request, metadata=md, timeout=10))
    else:
        blocking = messaging_pb2.BlockUserRequest(user_id=user_id)
        call(lambda md: call.messaging.BlockUser(blocking, metadata=md, timeout=10))
    call(
        lambda md: call.messaging.ListBlocked(
            messaging_pb2.ListBlockedRequest(), metadata=md, timeout=10
        )
    )


@seed(SEED)
@FUZZ
@given(cursor=texts)
def test_subscribe_with_any_cursor(call: Any, cursor: str) -> None:
    def first_event(md: Any) -> None:
        stream = call.messaging.Subscribe(
            messaging_pb2.SubscribeRequest(resume_cursor=cursor), metadata=md, timeout=10
        )
        try:
            next(stream)  # a resync, a replayed message or caught_up: each is an answer
        finally:
            stream.cancel()

    call(first_event)


@seed(SEED)
@FUZZ
@given(
    stream_id=ids,
    token=texts | st.just("<the user's>"),
    cursor=texts,
    credit=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_relay_with_any_open(
    call: Any, session: dict[str, Any], stream_id: int, token: str, cursor: str, credit: int
) -> None:
    """The BFF's call: any stream it opens is answered (its events, or its end with a status
    that names the problem), or the call is refused naming it."""
    service = (
        ("authorization", f"Bearer {tokens.issue(jwt_secret(), tokens.SERVICE_SUBJECT, 60)}"),
    )
    opened = messaging_pb2.RelayOpen(
        stream_id=stream_id,
        access_token=session["access_token"] if token == "<the user's>" else token,
        resume_cursor=cursor,
        credit=credit,
    )
    answered = threading.Event()

    def requests() -> Iterator[messaging_pb2.RelayRequest]:
        yield messaging_pb2.RelayRequest(open=opened)
        answered.wait(10)  # the call stays open until the first answer

    def first_batch(_: Any) -> None:
        batches = call.messaging.Relay(requests(), metadata=service, timeout=10)
        try:
            for item in next(batches).events:
                assert item.stream_id == stream_id
                if item.WhichOneof("item") == "ended":
                    assert grpc.StatusCode.INTERNAL.value[0] != item.ended.code
                    assert grpc.StatusCode.UNKNOWN.value[0] != item.ended.code
                    assert not any(leak in item.ended.detail for leak in LEAKS)
        finally:
            answered.set()
            batches.cancel()

    call(first_batch)


@seed(SEED)
@FUZZ
@given(chat_id=texts, before=ids, after=ids, limit=int32s)
def test_get_history(call: Any, chat_id: str, before: int, after: int, limit: int) -> None:
    request = history_pb2.GetHistoryRequest(
        chat_id=chat_id, before_id=before, after_id=after, limit=limit
    )
    call(lambda md: call.history.GetHistory(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(username=texts, user_id=ids, by_name=st.booleans(), limit=int32s)
def test_find_user_and_list_chats(
    call: Any, username: str, user_id: int, by_name: bool, limit: int
) -> None:
    find = (
        history_pb2.FindUserRequest(username=username)
        if by_name
        else history_pb2.FindUserRequest(user_id=user_id)
    )
    call(lambda md: call.history.FindUser(find, metadata=md, timeout=10))
    listing = history_pb2.ListChatsRequest(limit=limit)
    call(lambda md: call.history.ListChats(listing, metadata=md, timeout=10))


@pytest.fixture(scope="module")
def own_group(call: Any, session: dict[str, Any]) -> str:
    """A group the fuzzing user is in, so searches reach the index and not only the checks."""
    metadata = (("authorization", f"Bearer {session['access_token']}"),)
    request = groups_pb2.CreateGroupRequest(name="searched", client_request_id=uuid.uuid4().hex)
    return str(call.groups.CreateGroup(request, metadata=metadata, timeout=10).chat_id)


@seed(SEED)
@FUZZ
@given(chat_id=texts, query=texts, before=ids, limit=int32s, own=st.booleans())
def test_search_with_any_query(
    call: Any, own_group: str, chat_id: str, query: str, before: int, limit: int, own: bool
) -> None:
    request = history_pb2.SearchMessagesRequest(
        chat_id=own_group if own else chat_id, query=query, before_id=before, limit=limit
    )
    call(lambda md: call.history.SearchMessages(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(
    chat_id=texts,
    name=texts,
    size=int64s,
    content_type=texts | st.sampled_from(["image/png", "text/plain", "a/b"]),
    own=st.booleans(),
)
def test_create_upload_with_anything(
    call: Any, own_group: str, chat_id: str, name: str, size: int, content_type: str, own: bool
) -> None:
    request = messaging_pb2.CreateUploadRequest(
        chat_id=own_group if own else chat_id, name=name, size=size, content_type=content_type
    )
    call(lambda md: call.messaging.CreateUpload(request, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(
    chat_id=texts,
    message_id=ids,
    attachment_id=ids,
    sha=texts,
    pixels=int32s,
    own=st.booleans(),
)
def test_attachments_with_any_ids(
    call: Any,
    own_group: str,
    chat_id: str,
    message_id: int,
    attachment_id: int,
    sha: str,
    pixels: int,
    own: bool,
) -> None:
    chat = own_group if own else chat_id
    link = messaging_pb2.GetAttachmentRequest(
        chat_id=chat, message_id=message_id, attachment_id=attachment_id
    )
    call(lambda md: call.messaging.GetAttachment(link, metadata=md, timeout=10))
    send = messaging_pb2.SendRequest(
        chat_id=chat,
        client_message_id=sha or "k",
        body=sha,
        attachments=[
            common_pb2.Attachment(
                attachment_id=attachment_id, sha256=sha, width=pixels, height=pixels
            )
        ],
    )
    call(lambda md: call.messaging.Send(send, metadata=md, timeout=10))


@seed(SEED)
@FUZZ
@given(
    name=st.none() | texts,
    avatar=st.none() | ids,
    users=st.lists(ids, max_size=20),
    size=int64s,
    kind=texts | st.sampled_from(["image/png", "image/webp"]),
)
def test_profiles_with_anything(
    call: Any, name: str | None, avatar: int | None, users: list[int], size: int, kind: str
) -> None:
    change = messaging_pb2.UpdateProfileRequest(display_name=name, avatar_id=avatar)
    call(lambda md: call.messaging.UpdateProfile(change, metadata=md, timeout=10))
    batch = history_pb2.GetUsersRequest(user_ids=users)
    call(lambda md: call.history.GetUsers(batch, metadata=md, timeout=10))
    upload = messaging_pb2.CreateAvatarUploadRequest(size=size, content_type=kind)
    call(lambda md: call.messaging.CreateAvatarUpload(upload, metadata=md, timeout=10))
    asked = messaging_pb2.GetAvatarRequest(user_id=users[0] if users else 0)
    call(lambda md: call.messaging.GetAvatar(asked, metadata=md, timeout=10))
