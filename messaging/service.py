"""The messaging gRPC service: Subscribe (live stream with resume) and Relay (many of them, for
a BFF), Send, OpenDirectChat and the rest."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
from confluent_kafka import KafkaException

from chatlib import deliveries, errors, grpc_auth, tokens, user_records
from chatlib.chat_ids import check_chat_id
from chatlib.ids import smallest_id_at
from chatlib.ownership import Routing
from chatlib.partitioning import Stretch
from messaging.attachments import Attachments
from messaging.blocks import Blocks
from messaging.chats import ChatDirectory
from messaging.groups.changes import ChatChanges
from messaging.history_api import HistoryApi
from messaging.send.amend import Amendments
from messaging.send.receipts import ReceiptFanOut, receipt_entry
from messaging.send.sender import Accepted, Outgoing, Sender
from messaging.signals.presence import Presence
from messaging.signals.typing import TypingSignals
from messaging.streams.cursor import Cursor, Resume, resume_from
from messaging.streams.fanout import FanOut
from messaging.streams.leases import PartitionLeases
from messaging.streams.recent import RecentDeliveries
from messaging.streams.registry import LiveStream, RecentIds, StreamRegistry, end, message_event
from messaging.streams.relay import RelayCall
from messaging.streams.replay import Replayer, ReplayFailed, TooManyToReplay, Watermarks
from protos.chat.v1 import common_pb2, messaging_pb2, messaging_pb2_grpc

logger = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]


def _sent(accepted: Accepted) -> messaging_pb2.SendResponse:
    return messaging_pb2.SendResponse(
        message_id=accepted.message_id,
        created_at_ms=accepted.created_at_ms,
        duplicate=accepted.duplicate,
    )


def ephemeral(shared: messaging_pb2.ClientEvent, last: Cursor) -> messaging_pb2.ClientEvent:
    """An ephemeral event for one stream: it carries the stream's position, so a client that
    keeps the cursor of whatever came last resumes from the right place."""
    event = messaging_pb2.ClientEvent()
    event.CopyFrom(shared)
    event.cursor = last.encode()
    return event


class MessagingService(messaging_pb2_grpc.MessagingServiceServicer):
    def __init__(
        self,
        *,
        server_name: str,
        routing: Routing,
        leases: PartitionLeases,
        sender: Sender,
        directory: ChatDirectory,
        changes: ChatChanges,
        receipts: ReceiptFanOut,
        amendments: Amendments,
        typing: TypingSignals,
        presence: Presence,
        registry: StreamRegistry,
        recent: RecentDeliveries,
        replayer: Replayer,
        watermarks: Watermarks,
        fanout: FanOut,
        verifier: tokens.Verifier,
        stream_queue: int,
        blocks: Blocks,
        history: HistoryApi,
        files: Attachments | None = None,
    ) -> None:
        self._server_name = server_name
        self._routing = routing
        self._leases = leases
        self._sender = sender
        self._directory = directory
        self._changes = changes
        self._receipts = receipts
        self._amendments = amendments
        self._typing = typing
        self._presence = presence
        self._registry = registry
        self._recent = recent
        self._replayer = replayer
        self._watermarks = watermarks
        self._fanout = fanout
        self._verifier = verifier
        self._stream_queue = stream_queue
        self._blocks = blocks
        self._files = files
        self._history = history

    @errors.handler
    async def Send(
        self, request: messaging_pb2.SendRequest, context: Context
    ) -> messaging_pb2.SendResponse:
        user = self._user(context)
        accepted = await self._sender.send(
            user,
            request.chat_id,
            request.client_message_id,
            request.body,
            self._files,
            request.attachments,
        )
        return _sent(accepted)

    @errors.handler
    async def CreateUpload(
        self, request: messaging_pb2.CreateUploadRequest, context: Context
    ) -> messaging_pb2.Upload:
        user = self._user(context)
        files = self._attachments_on()
        check_chat_id(request.chat_id)
        await self._directory.check_sender(request.chat_id, user)
        return await files.create_upload(
            user, request.chat_id, request.name, request.size, request.content_type
        )

    @errors.handler
    async def GetAttachment(
        self, request: messaging_pb2.GetAttachmentRequest, context: Context
    ) -> messaging_pb2.AttachmentLink:
        user = self._user(context)
        files = self._attachments_on()
        check_chat_id(request.chat_id)
        if not request.message_id or not request.attachment_id:
            raise errors.InvalidArgument("message_id and attachment_id are required")
        await self._amendments.visible(request.chat_id, user, request.message_id)
        url, expires, attachment = await files.link(
            request.chat_id, request.message_id, request.attachment_id
        )
        return messaging_pb2.AttachmentLink(url=url, expires_at_ms=expires, attachment=attachment)

    @errors.handler
    async def UpdateProfile(
        self, request: messaging_pb2.UpdateProfileRequest, context: Context
    ) -> messaging_pb2.Profile:
        user = self._user(context)
        shown = request.display_name if request.HasField("display_name") else None
        if shown is not None:
            user_records.check_display_name(shown)
        avatar = request.avatar_id if request.HasField("avatar_id") else None
        replaced = 0
        if avatar is not None:
            files = self._attachments_on()
            if avatar:
                await files.choose_avatar(user, avatar)
            before = (await self._history.users([user])).get(user)
            replaced = before.avatar_id if before is not None else 0
        stored = await self._history.update_profile(user, shown, avatar)
        if replaced and replaced != stored.avatar_id:
            try:
                await self._attachments_on().avatar_replaced(user, replaced)
            except Exception as exc:  # noqa: BLE001 - the change holds; the old picture leaks
                logger.warning("the replaced avatar %d of %d stays stored: %s", replaced, user, exc)
        profile = messaging_pb2.Profile(
            user_id=user,
            username=stored.username,
            display_name=stored.display_name,
            avatar_id=stored.avatar_id,
        )
        try:
            await self._presence.tell_contacts(user, messaging_pb2.ClientEvent(profile=profile))
        except Exception as exc:  # noqa: BLE001 - stored; contacts also read it on demand
            logger.warning("the profile change of %d was not told: %s", user, exc)
        return profile

    @errors.handler
    async def CreateAvatarUpload(
        self, request: messaging_pb2.CreateAvatarUploadRequest, context: Context
    ) -> messaging_pb2.Upload:
        user = self._user(context)
        return await self._attachments_on().create_avatar_upload(
            user, request.size, request.content_type
        )

    @errors.handler
    async def GetAvatar(
        self, request: messaging_pb2.GetAvatarRequest, context: Context
    ) -> messaging_pb2.AttachmentLink:
        self._user(context)
        files = self._attachments_on()
        if not request.user_id:
            raise errors.InvalidArgument("user_id is required")
        found = (await self._history.users([request.user_id])).get(request.user_id)
        if found is None:
            raise errors.NotFound(f"no user {request.user_id}")
        if not found.avatar_id:
            raise errors.NotFound(f"user {request.user_id} has no avatar")
        url, expires, attachment = await files.avatar_link(request.user_id, found.avatar_id)
        return messaging_pb2.AttachmentLink(url=url, expires_at_ms=expires, attachment=attachment)

    def _attachments_on(self) -> Attachments:
        if self._files is None:
            raise errors.Unavailable("attachments are not configured on this deployment")
        return self._files

    @errors.handler
    async def OpenDirectChat(
        self, request: messaging_pb2.OpenDirectChatRequest, context: Context
    ) -> common_pb2.Chat:
        user = self._user(context)
        chat_id = await self._directory.open_direct(user, request.peer_id)
        await self._changes.opened(user, request.peer_id)
        members = sorted({user, request.peer_id})
        return common_pb2.Chat(chat_id=chat_id, kind="direct", member_ids=members)

    @errors.handler
    async def BlockUser(
        self, request: messaging_pb2.BlockUserRequest, context: Context
    ) -> messaging_pb2.BlockUserResponse:
        await self._blocks.block(self._user(context), request.user_id)
        return messaging_pb2.BlockUserResponse()

    @errors.handler
    async def UnblockUser(
        self, request: messaging_pb2.UnblockUserRequest, context: Context
    ) -> messaging_pb2.UnblockUserResponse:
        await self._blocks.unblock(self._user(context), request.user_id)
        return messaging_pb2.UnblockUserResponse()

    @errors.handler
    async def ListBlocked(
        self, request: messaging_pb2.ListBlockedRequest, context: Context
    ) -> messaging_pb2.ListBlockedResponse:
        found = await self._blocks.blocked_by(self._user(context))
        return messaging_pb2.ListBlockedResponse(
            blocked=[
                messaging_pb2.BlockedUser(user_id=b.user_id, blocked_at_ms=b.blocked_at_ms)
                for b in found
            ]
        )

    @errors.handler
    async def MarkRead(
        self, request: messaging_pb2.MarkReadRequest, context: Context
    ) -> messaging_pb2.MarkReadResponse:
        await self._mark(self._user(context), request.chat_id, request.message_id, read=True)
        return messaging_pb2.MarkReadResponse()

    @errors.handler
    async def MarkDelivered(
        self, request: messaging_pb2.MarkDeliveredRequest, context: Context
    ) -> messaging_pb2.MarkDeliveredResponse:
        await self._mark(self._user(context), request.chat_id, request.message_id, read=False)
        return messaging_pb2.MarkDeliveredResponse()

    @errors.handler
    async def EditMessage(
        self, request: messaging_pb2.EditMessageRequest, context: Context
    ) -> messaging_pb2.SendResponse:
        user = self._user(context)
        accepted = await self._amendments.edit(
            user, request.chat_id, request.message_id, request.body, request.client_request_id
        )
        return _sent(accepted)

    @errors.handler
    async def DeleteMessage(
        self, request: messaging_pb2.DeleteMessageRequest, context: Context
    ) -> messaging_pb2.SendResponse:
        user = self._user(context)
        accepted = await self._amendments.delete(
            user, request.chat_id, request.message_id, request.client_request_id
        )
        return _sent(accepted)

    @errors.handler
    async def React(
        self, request: messaging_pb2.ReactRequest, context: Context
    ) -> messaging_pb2.SendResponse:
        user = self._user(context)
        accepted = await self._amendments.react(
            user,
            request.chat_id,
            request.message_id,
            request.emoji,
            request.remove,
            request.client_request_id,
        )
        return _sent(accepted)

    @errors.handler
    async def SetTyping(
        self, request: messaging_pb2.SetTypingRequest, context: Context
    ) -> messaging_pb2.SetTypingResponse:
        await self._typing.set(self._user(context), request.chat_id, stopped=request.stopped)
        return messaging_pb2.SetTypingResponse()

    @errors.handler
    async def GetPresence(
        self, request: messaging_pb2.GetPresenceRequest, context: Context
    ) -> messaging_pb2.GetPresenceResponse:
        found = await self._presence.get(self._user(context), list(request.user_ids))
        return messaging_pb2.GetPresenceResponse(presences=found)

    async def _mark(self, user: int, chat_id: str, message_id: int, *, read: bool) -> None:
        """A read (or delivery) receipt: on the reader's partition at once (their devices and
        their chat state), to the chat's other members coalesced."""
        check_chat_id(chat_id)
        if not message_id:
            raise errors.InvalidArgument("message_id is required")
        chat, member = await self._directory.check_reader(chat_id, user)
        # An id from the future would hold the watermark above every message to come: it
        # reads as "everything up to now" (this server's now: an id another server minted
        # a few milliseconds ahead stays unmarked until it is marked again).
        now = smallest_id_at(int(time.time() * 1000) + 1) - 1
        up_to = min(message_id, now)
        own = Outgoing(receipt_entry(user, chat, read=read), frozenset({user}))
        await self._sender.publish(own, up_to)
        if member:  # a former member's reading is their own business
            self._receipts.note(user, chat, up_to, read=read)

    async def Subscribe(
        self, request: messaging_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[messaging_pb2.ClientEvent]:
        try:
            async for event in self.live_events(
                lambda: self._claims(context), request.resume_cursor
            ):
                yield event
        except errors.ChatError as exc:
            await errors.abort(context, exc)

    async def Relay(
        self, request_iterator: AsyncIterator[messaging_pb2.RelayRequest], context: Context
    ) -> AsyncIterator[messaging_pb2.RelayBatch]:
        try:
            caller = grpc_auth.claims(context, self._verifier)
            if caller.subject != tokens.SERVICE_SUBJECT:
                raise errors.PermissionDenied(
                    "Relay carries the BFF's streams and takes only its service token; "
                    "a user subscribes with Subscribe"
                )
            # Accepted: the BFF writes nothing before this (a write racing a refusal would
            # hide the refusal's status behind grpc's INTERNAL).
            await context.send_initial_metadata(())
            async for batch in RelayCall(self._relayed).batches(request_iterator):
                yield batch
        except errors.ChatError as exc:
            await errors.abort(context, exc)

    def _relayed(self, token: str, cursor: str) -> AsyncGenerator[messaging_pb2.ClientEvent]:
        def claims() -> tokens.Claims:
            try:
                return self._verifier.verify_user(token)
            except tokens.InvalidToken as exc:
                raise errors.Unauthenticated(str(exc)) from None

        return self.live_events(claims, cursor)

    async def live_events(
        self, verify: Callable[[], tokens.Claims], resume_cursor: str
    ) -> AsyncGenerator[messaging_pb2.ClientEvent]:
        """One user's live stream, as Subscribe and each stream of a Relay carry it: the
        caller (``verify`` says who, or raises) and their cursor are checked, then the missed
        events, ``caught_up`` and live events follow. It ends after a Redirect or a
        ResumeRequired; any other end is a ChatError saying why."""
        claims = verify()
        user = claims.user_id
        partition, owner = self._routing.owner_of_user(user)
        if not self._leases.holds(partition):
            if owner.name != self._server_name:
                raise errors.FailedPrecondition(
                    f"partition {partition} of user {user} is served by {owner.name} at "
                    f"{owner.target}; connect there",
                    metadata=((errors.REDIRECT_KEY, owner.target),),
                )
            raise errors.Unavailable(f"partition {partition} is changing hands; retry in a moment")
        # Unavailable while the partition is still moving here. Taken in the same step as
        # the registration below: no fan-out batch can fall between the two.
        high = self._fanout.next_offset(partition)
        cursor = Cursor.decode(resume_cursor) if resume_cursor else None
        resume = None
        if cursor is not None:
            placement = self._routing.partitioning.get()
            if cursor.partition >= placement.partitions:
                # Issued after partitions were added, which this server learns of in a
                # moment (the config's announcement is on its way).
                raise errors.Unavailable(
                    f"resume_cursor is for partition {cursor.partition}, beyond the"
                    f" {placement.partitions} this server knows of yet; retry in a moment"
                )
            trail = placement.trail(user)
            resume = resume_from(trail, cursor)
            if resume is None or trail[-1].partition != partition:
                raise errors.InvalidArgument(
                    f"resume_cursor is for partition {cursor.partition}, yours is {partition}"
                )
        stream = LiveStream(user, partition, self._stream_queue, claims.session_id)
        # A stream lives no longer than the token that opened it: the client is told, and
        # subscribes again (with its cursor) using a fresh token.
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, claims.expires_at - time.time()),
            end,
            stream,
            "the access token expired; subscribe again with a fresh token and your cursor",
        )
        # Registered before the replay starts, so nothing published meanwhile is missed;
        # offsets already replayed are skipped when the live queue is drained. (No await
        # since the token was checked: a revocation cannot fall between the two.)
        self._registry.add(stream)
        try:
            async for event in self._events(stream, partition, high, cursor, resume):
                yield event
        except (KafkaException, ReplayFailed) as exc:
            # Where the partition ends, or what the cursor missed, could not be read (a broker
            # down or frozen): a moment's outage the client rides out by resuming again.
            logger.warning("a resume of partition %d could not read Kafka: %s", partition, exc)
            raise errors.Unavailable(
                f"the log of partition {partition} cannot be read right now ({exc}); "
                "subscribe again with the same cursor"
            ) from None
        finally:
            expiry.cancel()
            self._registry.remove(stream)

    async def _events(
        self,
        stream: LiveStream,
        partition: int,
        high: int,
        cursor: Cursor | None,
        resume: Resume | None,
    ) -> AsyncIterator[messaging_pb2.ClientEvent]:
        recent = RecentIds()
        ahead = False
        if cursor is not None and resume is not None:
            low, log_end = await self._watermarks.get(partition)
            high = await self._fanout.reach(partition, log_end)
            # A cursor past the log's end was not issued by this log (the topic was
            # recreated, or the cursor was made up): nothing could ever be after it.
            ahead = (
                not resume.earlier and cursor.partition == partition and (cursor.offset >= log_end)
            )
            missed = None if ahead else await self._earlier(stream.user_id, resume.earlier)
            if missed is not None:
                now = await self._missed(stream.user_id, partition, resume.after, low, high)
                missed = None if now is None else missed + [(partition, o, v) for o, v in now]
        last = Cursor(partition, high - 1)
        if cursor is not None:
            if missed is None:
                yield messaging_pb2.ClientEvent(
                    cursor=last.encode(),
                    resync_required=messaging_pb2.ResyncRequired(
                        reason=(
                            "the cursor is ahead of the log; re-sync from the chat list and "
                            "history, then resume with this event's cursor"
                            if ahead
                            else "the cursor is too far behind to replay; re-sync from the "
                            "chat list and history"
                        )
                    ),
                )
            else:
                for where, offset, value in missed:
                    try:
                        delivery = deliveries.decode(value)
                    except deliveries.InvalidDelivery:
                        continue
                    if not deliveries.streamed(delivery):
                        continue
                    replayed = message_event(Cursor(where, offset), delivery)
                    if recent.first_time(replayed.message_id):
                        yield replayed.event
                if cursor.partition == partition:
                    last = max(cursor, last)
        yield messaging_pb2.ClientEvent(cursor=last.encode(), caught_up=messaging_pb2.CaughtUp())
        queue = stream.queue
        while True:
            while queue:
                event = queue.popleft()
                if event.cursor is None:
                    yield ephemeral(event.event, last)
                    continue
                if event.cursor <= last:
                    continue
                last = event.cursor
                if recent.first_time(event.message_id):
                    yield event.event
            if stream.overflowed or stream.closing:
                why = "this server is stopping" if stream.closing else "the stream fell behind"
                yield messaging_pb2.ClientEvent(
                    cursor=last.encode(),
                    resume_required=messaging_pb2.ResumeRequired(
                        reason=f"{why}; reconnect with this cursor"
                    ),
                )
                return
            if stream.ended is not None:
                raise errors.Unauthenticated(stream.ended)
            if stream.redirect is not None:
                yield messaging_pb2.ClientEvent(
                    cursor=last.encode(),
                    redirect=messaging_pb2.Redirect(
                        address=stream.redirect.target,
                        server=stream.redirect.server,
                        reason=f"partition {partition} moved to {stream.redirect.server}; "
                        "subscribe there with this cursor",
                    ),
                )
                return
            stream.wake.clear()
            if not queue:
                await stream.wake.wait()

    async def _earlier(
        self, user: int, stretches: list[Stretch]
    ) -> list[tuple[int, int, bytes]] | None:
        """The user's records on the partitions they had before partitions were added, after
        the cursor: (partition, offset, value), oldest first; None if they are too many."""
        found: list[tuple[int, int, bytes]] = []
        for stretch in stretches:
            try:
                records = await self._replayer.replay(
                    stretch.partition, user, stretch.start, stretch.end
                )
            except TooManyToReplay:
                return None
            found.extend((stretch.partition, offset, value) for offset, value in records)
        return found

    async def _missed(
        self, user: int, partition: int, after: int, low: int, high: int
    ) -> list[tuple[int, bytes]] | None:
        """The user's records after offset ``after`` up to ``high`` (exclusive), from memory
        when it still holds them, else from Kafka; None if they are too many or older than
        the log's start, ``low``."""
        if self._recent.covers(partition, after):
            return self._recent.replay(partition, user, after, high)
        if after + 1 < low:
            return None
        try:
            return await self._replayer.replay(partition, user, after + 1, high)
        except TooManyToReplay:
            return None

    def _user(self, context: Context) -> int:
        return self._claims(context).user_id

    def _claims(self, context: Context) -> tokens.Claims:
        return grpc_auth.user_claims(context, self._verifier)
