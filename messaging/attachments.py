"""Files sent in messages.

The bytes never pass through our services: ``create_upload`` records what the client declared
(chat, name, size, type) in Cassandra's ``attachments`` and answers with a presigned PUT whose
signature covers Content-Length and Content-Type, so the store itself refuses any other size
or type. A send names its uploads (``claim``: the uploader's, for this chat, in no other
message; a retry of the same send claims them again), and once the send is accepted each is
recorded under its message (``record``). ``link`` presigns a short-lived GET for someone who
can read the message, while it is not deleted. A message's deletion marks its files
(``message_deleted``), and ``sweep`` removes from the store the files of deleted messages and
the uploads no send claimed within ``files.upload_ttl_seconds``, then their rows.

A user's picture is an upload too, made for no chat (``create_avatar_upload``: its row's
chat is ``AVATAR``, so no send can name it). ``choose_avatar`` claims it for the profile
(UpdateProfile records its id in the user's record, which history owns), ``avatar_link``
presigns it for anyone while it is the one chosen, and ``avatar_replaced`` marks the one a
change replaced, which the sweep then removes like a deleted message's file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from chatlib.cassandra import AsyncSession
from chatlib.config_sections import Files
from chatlib.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from chatlib.ids import Snowflake, signed, timestamp_ms, unsigned
from chatlib.live_config import LiveSection
from chatlib.object_store import ObjectStore, ObjectStoreError
from protos.chat.v1 import common_pb2, messaging_pb2

logger = logging.getLogger(__name__)

#: Files one message may carry.
MAX_PER_MESSAGE = 10
MAX_NAME = 255
_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: How long an upload URL stays good.
UPLOAD_URL_SECONDS = 900
#: How long after its send an attachment may still lack its record (the send's answer and
#: the recipients' events race the write): asked for meanwhile, it is UNAVAILABLE, not gone.
RECORDING_SECONDS = 60

#: The chat of avatar uploads' rows (no chat id looks like it), and the claim of the one in use.
AVATAR = "avatar"
#: Pictures: at most this big (and at most ``files.max_bytes``), of these types.
AVATAR_MAX_BYTES = 5 * 2**20
AVATAR_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

_INSERT = (
    "INSERT INTO attachments (attachment_id, uploader_id, chat_id, name, size, content_type,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ROW = (
    "SELECT uploader_id, chat_id, name, size, content_type, message_key, message_id, deleted"
    " FROM attachments WHERE attachment_id = ?"
)
_CLAIM = "UPDATE attachments SET message_key = ? WHERE attachment_id = ? IF message_key = null"
_RECORD = "UPDATE attachments SET message_id = ? WHERE attachment_id = ?"
_BY_MESSAGE = (
    "INSERT INTO attachments_by_message (chat_id, message_id, attachment_id) VALUES (?, ?, ?)"
)
_OF_MESSAGE = (
    "SELECT attachment_id FROM attachments_by_message WHERE chat_id = ? AND message_id = ?"
)
_DELETED = "UPDATE attachments SET deleted = true WHERE attachment_id = ?"
_ALL = (
    "SELECT attachment_id, chat_id, created_at, message_key, message_id, deleted FROM attachments"
)
_FORGET = "DELETE FROM attachments WHERE attachment_id = ?"
_FORGET_OF_MESSAGE = "DELETE FROM attachments_by_message WHERE chat_id = ? AND message_id = ?"


def object_key(attachment_id: int) -> str:
    return f"a/{attachment_id}"


@dataclass(frozen=True)
class Stored:
    uploader_id: int
    chat_id: str
    name: str
    size: int
    content_type: str
    message_key: str | None
    message_id: int | None
    deleted: bool


def check_upload(name: str, size: int, content_type: str, max_bytes: int) -> None:
    if not 0 < len(name) <= MAX_NAME or "/" in name or any(ord(c) < 32 for c in name):
        raise InvalidArgument(
            f"name must be 1-{MAX_NAME} characters without '/' or control characters"
        )
    if not 0 < size <= max_bytes:
        raise InvalidArgument(f"size must be 1 to {max_bytes} bytes (files.max_bytes), not {size}")
    if not _TYPE.fullmatch(content_type):
        raise InvalidArgument(
            f"content_type must be a media type like image/png, not {content_type!r}"[:200]
        )


class Attachments:
    def __init__(
        self,
        db: AsyncSession,
        store: ObjectStore,
        ids: Snowflake,
        files: LiveSection[Files],
    ) -> None:
        self._db = db
        self._store = store
        self._ids = ids
        self._files = files
        self._http: aiohttp.ClientSession | None = None
        self._bucket_ready = False
        # A change of the section (a shorter sweep_seconds) starts the next sweep at once.
        self._changed = asyncio.Event()
        files.on_change(lambda _: self._changed.set())

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def create_upload(
        self, user: int, chat_id: str, name: str, size: int, content_type: str
    ) -> messaging_pb2.Upload:
        """One upload (its id, the URL, the headers to send, when the URL expires); the
        caller has checked that the user may send in the chat."""
        check_upload(name, size, content_type, self._files.get().max_bytes)
        return await self._upload(user, chat_id, name, size, content_type)

    async def create_avatar_upload(
        self, user: int, size: int, content_type: str
    ) -> messaging_pb2.Upload:
        """Like ``create_upload``, for a picture of the user."""
        if content_type not in AVATAR_TYPES:
            raise InvalidArgument(f"content_type of an avatar must be one of {AVATAR_TYPES}")
        limit = min(AVATAR_MAX_BYTES, self._files.get().max_bytes)
        if not 0 < size <= limit:
            raise InvalidArgument(f"size of an avatar must be 1 to {limit} bytes, not {size}")
        return await self._upload(user, AVATAR, AVATAR, size, content_type)

    async def _upload(
        self, user: int, chat_id: str, name: str, size: int, content_type: str
    ) -> messaging_pb2.Upload:
        attachment_id = self._ids.next_id()
        now = datetime.now(UTC)
        await self._db.execute(
            _INSERT, (signed(attachment_id), signed(user), chat_id, name, size, content_type, now)
        )
        headers = {"Content-Length": str(size), "Content-Type": content_type}
        url = self._store.presign(
            "PUT", object_key(attachment_id), UPLOAD_URL_SECONDS, headers, at=now
        )
        return messaging_pb2.Upload(
            attachment_id=attachment_id,
            url=url,
            headers={"Content-Type": content_type},
            expires_at_ms=int(now.timestamp() * 1000) + UPLOAD_URL_SECONDS * 1000,
        )

    async def _row(self, attachment_id: int) -> Stored | None:
        if not 0 < attachment_id < 2**63:
            return None
        rows = await self._db.execute(_ROW, (signed(attachment_id),))
        if not rows or rows[0].chat_id is None:
            return None
        r = rows[0]
        return Stored(
            unsigned(r.uploader_id),
            r.chat_id,
            r.name,
            r.size,
            r.content_type,
            r.message_key,
            unsigned(r.message_id) if r.message_id is not None else None,
            bool(r.deleted),
        )

    async def claim(
        self,
        user: int,
        chat_id: str,
        client_message_id: str,
        given: list[common_pb2.Attachment],
    ) -> list[common_pb2.Attachment]:
        """The attachments of a send, as its message will carry them: each the user's upload
        for this chat, claimed by this send (and no other) from now on."""
        if len(given) > MAX_PER_MESSAGE:
            raise InvalidArgument(f"a message carries at most {MAX_PER_MESSAGE} attachments")
        found = []
        named: set[int] = set()
        for attachment in given:
            if attachment.attachment_id in named:
                continue  # named twice: it is in the message once
            named.add(attachment.attachment_id)
            if attachment.sha256 and not _SHA256.fullmatch(attachment.sha256):
                raise InvalidArgument("sha256 must be 64 lowercase hex digits")
            if not 0 <= attachment.width <= 100_000 or not 0 <= attachment.height <= 100_000:
                raise InvalidArgument("width and height must be 0 to 100000 pixels")
            row = await self._row(attachment.attachment_id)
            if row is None or row.uploader_id != user or row.chat_id != chat_id:
                raise NotFound(
                    f"no upload {attachment.attachment_id} of yours for chat {chat_id!r}"
                    " (CreateUpload makes one)"
                )
            if row.message_key != client_message_id:
                if row.message_key is not None:
                    raise FailedPrecondition(
                        f"attachment {attachment.attachment_id} is in another message already"
                    )
                rows = await self._db.execute(
                    _CLAIM, (client_message_id, signed(attachment.attachment_id))
                )
                if not rows[0][0] and rows[0].message_key != client_message_id:
                    raise FailedPrecondition(
                        f"attachment {attachment.attachment_id} is in another message already"
                    )
            found.append(
                common_pb2.Attachment(
                    attachment_id=attachment.attachment_id,
                    name=row.name,
                    size=row.size,
                    content_type=row.content_type,
                    sha256=attachment.sha256,
                    width=attachment.width,
                    height=attachment.height,
                )
            )
        return found

    async def record(self, chat_id: str, message_id: int, ids: list[int]) -> None:
        """The accepted message that holds these attachments."""
        statements = []
        for attachment_id in ids:
            statements.append(
                (self._db.bind(_RECORD, (signed(message_id), signed(attachment_id))), 40)
            )
            statements.append(
                (
                    self._db.bind(
                        _BY_MESSAGE, (chat_id, signed(message_id), signed(attachment_id))
                    ),
                    80,
                )
            )
        await self._db.write(statements)

    async def link(
        self, chat_id: str, message_id: int, attachment_id: int
    ) -> tuple[str, int, common_pb2.Attachment]:
        """A download URL for an attachment of a message the caller may read and that is not
        deleted (the caller has checked both)."""
        row = await self._row(attachment_id)
        missing = NotFound(
            f"message {message_id} of chat {chat_id!r} has no attachment {attachment_id}"
        )
        if row is None or row.chat_id != chat_id or row.deleted:
            raise missing
        if row.message_id != message_id:
            young = time.time() * 1000 - timestamp_ms(message_id) < RECORDING_SECONDS * 1000
            if row.message_id is None and row.message_key is not None and young:
                raise Unavailable("the attachment is being recorded with its message; retry")
            raise missing
        return self._download(attachment_id, row)

    async def choose_avatar(self, user: int, avatar_id: int) -> None:
        """Claim the user's avatar upload for their profile, once its bytes are stored."""
        row = await self._row(avatar_id)
        if row is None or row.uploader_id != user or row.chat_id != AVATAR or row.deleted:
            raise NotFound(f"no avatar upload {avatar_id} of yours (CreateAvatarUpload makes one)")
        if row.message_key == AVATAR:
            return  # chosen already (a retry, or the picture in use)
        if not await self._store.exists(self._client(), object_key(avatar_id)):
            raise FailedPrecondition(f"avatar {avatar_id} has no bytes yet: upload them first")
        await self._db.execute(_CLAIM, (AVATAR, signed(avatar_id)))

    async def avatar_replaced(self, user: int, avatar_id: int) -> None:
        """The user's profile no longer shows this picture: the sweep removes it."""
        row = await self._row(avatar_id)
        if row is not None and row.uploader_id == user and row.chat_id == AVATAR:
            await self._db.execute(_DELETED, (signed(avatar_id),))

    async def avatar_link(
        self, user: int, avatar_id: int
    ) -> tuple[str, int, common_pb2.Attachment]:
        """A download URL for the picture the user's profile shows (``avatar_id``)."""
        row = await self._row(avatar_id)
        if row is None or row.uploader_id != user or row.chat_id != AVATAR or row.deleted:
            raise NotFound(f"user {user} has no avatar")
        return self._download(avatar_id, row)

    def _download(self, attachment_id: int, row: Stored) -> tuple[str, int, common_pb2.Attachment]:
        seconds = self._files.get().link_seconds
        now = datetime.now(UTC)
        url = self._store.presign("GET", object_key(attachment_id), seconds, at=now)
        described = common_pb2.Attachment(
            attachment_id=attachment_id, name=row.name, size=row.size, content_type=row.content_type
        )
        return url, int(now.timestamp() * 1000) + seconds * 1000, described

    async def message_deleted(self, chat_id: str, message_id: int) -> None:
        """Mark a deleted message's files: ``link`` refuses them, ``sweep`` removes them."""
        rows = await self._db.execute(_OF_MESSAGE, (chat_id, signed(message_id)))
        await self._db.write([(self._db.bind(_DELETED, (row.attachment_id,)), 40) for row in rows])

    async def sweep(self) -> int:
        """Remove what no message holds: files of deleted messages, and uploads no send
        claimed within ``files.upload_ttl_seconds``; how many went."""
        expired_before = datetime.now(UTC).timestamp() - self._files.get().upload_ttl_seconds
        removed = 0
        for row in await self._db.execute(_ALL):
            created = row.created_at.replace(tzinfo=UTC).timestamp() if row.created_at else 0
            unclaimed = row.message_key is None and created < expired_before
            if not (row.deleted or unclaimed):
                continue
            await self._store.delete(self._client(), object_key(unsigned(row.attachment_id)))
            if row.message_id is not None:
                await self._db.execute(_FORGET_OF_MESSAGE, (row.chat_id, row.message_id))
            await self._db.execute(_FORGET, (row.attachment_id,))
            removed += 1
        return removed

    async def sweep_forever(
        self, stop: asyncio.Event, origins: list[str], sweeper: Callable[[], bool]
    ) -> None:
        """Make the bucket (with CORS rules for browsers from ``origins``) once the store
        answers, then sweep every ``files.sweep_seconds`` while ``sweeper()`` says this
        server is the one to (the sweep reads the whole table: one server is enough, and
        two for a moment while that changes hands only delete the same things twice)."""
        while not stop.is_set():
            self._changed.clear()
            try:
                if not self._bucket_ready:
                    await self._store.ensure_bucket(self._client(), origins)
                    self._bucket_ready = True
                removed = await self.sweep() if sweeper() else 0
                if removed:
                    logger.info("swept %d attachments from the object store", removed)
            except (ObjectStoreError, OSError) as exc:
                logger.warning("sweeping attachments failed, trying again later: %s", exc)
            except Exception:  # a Cassandra error among others: the next round tries again
                logger.exception("sweeping attachments failed")
            waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._changed)]
            pause = 1 if not self._bucket_ready else self._files.get().sweep_seconds
            await asyncio.wait(waits, timeout=pause, return_when="FIRST_COMPLETED")
            for wait in waits:
                wait.cancel()
