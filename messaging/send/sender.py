"""The send path: check, admit (rate limit and idempotency claim in one Redis round trip),
produce one copy per member, answer once Kafka acknowledged every copy.

Each message reaches Kafka once per recipient, by construction rather than by dedup windows
downstream:

* the claim (``messaging/send/admission.py``) gives every retry the message id of the first try;
* a retry of a message whose attempt is still running in this process joins that attempt
  instead of producing again, so a Kafka outage of any length writes each copy once: the
  caller is answered UNAVAILABLE after ``answer_seconds`` while the attempt goes on, and a
  later retry gets the message id;
* a retry of a message whose earlier attempt may or may not have reached Kafka (its process
  died, or the producer gave up on it) settles it first (``messaging/send/settle.py``): it finds the
  copies that landed and produces only the missing ones.

Once Kafka has every copy the claim is marked acknowledged, in one pipelined Redis call for
all the sends that finished meanwhile; until then the finished attempt stays here, so a retry
arriving in between is answered from memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from chatlib import deliveries, leases
from chatlib.chat_ids import check_chat_id
from chatlib.config_sections import Features, Limits
from chatlib.errors import ChatError, InvalidArgument, PermissionDenied, Unavailable
from chatlib.hashing import partition_for
from chatlib.ids import Snowflake, timestamp_ms
from chatlib.kafka import AsyncProducer, ProduceFailed, Record
from chatlib.leases import LeaseLost, WorkerLease
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from chatlib.telemetry import kafka_headers
from messaging.attachments import Attachments
from messaging.chats import ChatDirectory
from messaging.groups.fence import Fence
from messaging.send.admission import REDIS_FAILURES, Admission, Claim, Owner
from messaging.send.hold import SendHold
from messaging.send.settle import Settler
from protos.chat.v1 import common_pb2, envelope_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
Delivery = envelope_pb2.Delivery
SENT = Counter("messaging_messages_sent_total", "Messages acknowledged to senders", ["duplicate"])
SENT_NEW, SENT_AGAIN = SENT.labels(duplicate="false"), SENT.labels(duplicate="true")
SEND_SECONDS = Histogram("messaging_send_seconds", "Send latency until every copy is acked")
IN_FLIGHT = Gauge("messaging_sends_in_flight", "Sends between admission and acknowledgement")

MAX_CLIENT_ID = 64
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Sends of this process between admission and their claim's acknowledgement, at most.
MAX_IN_FLIGHT = 10_000
#: Acknowledgements of sends that finish within this long share one Redis write.
ACK_DELAY_SECONDS = 0.02
#: Pause before writing acknowledgements again after Redis failed them.
ACK_RETRY_SECONDS = 0.5
#: How long a group send waits for a membership change in progress before it gives up.
FENCE_WAIT_SECONDS = 4.0
#: A change in progress for this long may have died: whether its process lives is asked.
STALLED_SECONDS = 2.0


def check_idempotency_key(value: str, field: str) -> None:
    """A client's key for a send or a change: what makes its retries safe."""
    if not value:
        raise InvalidArgument(f"{field} is required (it makes retries safe)")
    if len(value) > MAX_CLIENT_ID or CONTROL.search(value):
        raise InvalidArgument(
            f"{field} must be 1-{MAX_CLIENT_ID} characters, none of them control characters"
        )


class Unproduced:
    """Message ids whose claim this process made, or may have made, and under which it surely
    produced nothing (the claim's answer was lost, or Kafka refused every copy): a retry may
    produce them at once. The newest ``LIMIT`` are kept; a retry comes within seconds."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._ids: dict[int, None] = {}

    def add(self, message_id: int) -> None:
        self._ids[message_id] = None
        if len(self._ids) > self.LIMIT:
            del self._ids[next(iter(self._ids))]

    def take(self, message_id: int) -> bool:
        """Whether ``message_id`` was one, forgetting it."""
        return self._ids.pop(message_id, 0) is None


@dataclass(frozen=True)
class Accepted:
    message_id: int
    created_at_ms: int
    duplicate: bool


@dataclass(frozen=True)
class Outgoing:
    """An entry of a chat's log (a message, a change, an amendment, a receipt) as the send
    path carries it: what every copy says, and to whom it goes."""

    #: The fields every copy shares (``chatlib/deliveries.py`` stamps the id and makes the
    #: copies); never changed once built.
    entry: Delivery
    recipients: frozenset[int]
    #: A group's membership version the recipients are from.
    version: int = 0
    #: For a change: writes it once the claim is held (``messaging/groups/changes.py``), and gives
    #: the log entry to produce and the claim (its id may have been moved past the fence's
    #: floor); None if it turned out to change nothing.
    prepare: Prepare | None = None

    @property
    def sender(self) -> int:
        return self.entry.sender_id

    @property
    def chat_id(self) -> str:
        return self.entry.chat_id

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def client_message_id(self) -> str:
        return self.entry.client_message_id

    @property
    def is_message(self) -> bool:
        """A message, which may be amended later (not a change, receipt or amendment)."""
        entry = self.entry
        return (
            self.prepare is None
            and not entry.HasField("change")
            and not entry.HasField("amendment")
            and not deliveries.is_receipt(entry)
        )


Prepare = Callable[[Claim], Awaitable[tuple[Outgoing, Claim] | None]]


class Sender:
    def __init__(
        self,
        producer: AsyncProducer,
        admission: Admission,
        redis: aioredis.Redis,
        directory: ChatDirectory,
        fence: Fence,
        ids: Snowflake,
        lease: WorkerLease,
        settler: Settler,
        *,
        limits: LiveSection[Limits],
        features: LiveSection[Features],
        partitioning: LiveSection[Partitioning],
        hold: SendHold,
        topic: str,
        answer_seconds: float = 5.0,
    ) -> None:
        self._producer = producer
        self._admission = admission
        self._redis = redis
        self._directory = directory
        self._fence = fence
        self._ids = ids
        self._lease = lease
        self._settler = settler
        self._limits = limits
        self._features = features
        self._partitioning = partitioning
        self._hold = hold
        self._topic = topic
        self._answer_seconds = answer_seconds
        #: Attempts by (sender, chat, client message id), from admission until the claim is
        #: marked acknowledged (or the attempt failed).
        self._attempts: dict[tuple[int, str, str], asyncio.Future[Accepted]] = {}
        #: Finished attempts whose claim is still to be marked acknowledged (they stay in
        #: ``_attempts`` until then, to answer retries from memory).
        self._unacknowledged: list[tuple[tuple[int, str, str], Claim]] = []
        self._acknowledging: set[tuple[int, str, str]] = set()
        #: Ids this process claimed (or may have) and surely produced nothing under.
        self._unproduced = Unproduced()
        IN_FLIGHT.set_function(self.in_flight)
        self._ack_task: asyncio.Task[None] | None = None

    @property
    def ids(self) -> Snowflake:
        return self._ids

    def check(
        self, chat_id: str, client_message_id: str, body: str, with_files: bool = False
    ) -> None:
        check_chat_id(chat_id)
        check_idempotency_key(client_message_id, "client_message_id")
        self.check_body(body, with_files)

    def check_body(self, body: str, with_files: bool = False) -> None:
        if not body.strip() and not with_files:
            raise InvalidArgument("body is empty")
        size = len(body.encode("utf-8"))
        maximum = self._limits.get().max_body_bytes
        if size > maximum:
            raise InvalidArgument(f"body is {size} bytes, the maximum is {maximum}")

    async def send(
        self,
        sender: int,
        chat_id: str,
        client_message_id: str,
        body: str,
        files: Attachments | None = None,
        attachments: Sequence[common_pb2.Attachment] = (),
    ) -> Accepted:
        """Send a message; with ``files``, the ``attachments`` the client named are claimed
        for it first and recorded under it once it is accepted."""
        started = time.perf_counter()
        self.check(chat_id, client_message_id, body, bool(attachments))
        chat = await self._directory.check_sender(chat_id, sender)
        if attachments:
            if files is None:
                raise Unavailable("attachments are not configured on this deployment")
            attachments = await files.claim(sender, chat_id, client_message_id, list(attachments))
        entry = Delivery(
            chat_id=chat_id,
            kind=chat.kind,
            sender_id=sender,
            body=body,
            client_message_id=client_message_id,
            attachments=attachments,
        )
        if attachments and files is not None:
            accepted = await self.submit(Outgoing(entry, chat.members, chat.version), started)
            await files.record(chat_id, accepted.message_id, [a.attachment_id for a in attachments])
            return accepted
        return await self.submit(Outgoing(entry, chat.members, chat.version), started)

    async def submit(self, outgoing: Outgoing, started: float | None = None) -> Accepted:
        """Send a checked message or change: join its attempt running here, or start one."""
        if not self._features.get().sending_enabled:
            raise Unavailable("sending is switched off for maintenance; retry later")
        started = time.perf_counter() if started is None else started
        key = (outgoing.sender, outgoing.chat_id, outgoing.client_message_id)
        attempt = self._attempts.get(key)
        joined = attempt is not None
        if attempt is None:
            if len(self._attempts) >= MAX_IN_FLIGHT:
                raise Unavailable(f"{MAX_IN_FLIGHT} sends are in flight on this server; retry")
            attempt = asyncio.ensure_future(self._attempt(outgoing))
            self._attempts[key] = attempt
            attempt.add_done_callback(functools.partial(self._finished, key))
        accepted = await self._answer(attempt)
        SEND_SECONDS.observe(time.perf_counter() - started)
        duplicate = joined or accepted.duplicate
        (SENT_AGAIN if duplicate else SENT_NEW).inc()
        return dataclasses.replace(accepted, duplicate=duplicate) if joined else accepted

    async def _answer(self, attempt: asyncio.Future[Accepted]) -> Accepted:
        """The attempt's outcome, or Unavailable after ``answer_seconds``; the attempt itself
        goes on either way (nor does a caller that goes away cancel it)."""
        if not attempt.done():
            # By hand rather than asyncio.wait((attempt,), timeout=...), which behaves the
            # same but costs 6.3 us per send here against 3.6 us (uvloop, timeit-style loop).
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()

            def wake(_: object = None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            attempt.add_done_callback(wake)
            timer = loop.call_later(self._answer_seconds, wake)
            try:
                await waiter
            finally:
                timer.cancel()
                attempt.remove_done_callback(wake)
            if not attempt.done():
                raise Unavailable(
                    "the message is accepted but Kafka has not confirmed it yet; retry with"
                    " the same client_message_id"
                )
        return attempt.result()

    async def _attempt(self, outgoing: Outgoing) -> Accepted:
        limits = self._limits.get()
        key = (outgoing.sender, outgoing.chat_id, outgoing.client_message_id)
        try:
            owner = Owner(self._lease.check(), self._lease.token)
            new_id = self._ids.next_id()
        except LeaseLost as exc:
            raise Unavailable(f"this server cannot assign message ids right now: {exc}") from None
        if outgoing.kind == "group" and outgoing.prepare is None:
            outgoing, new_id = await self._fenced(outgoing, new_id)
        try:
            claim = await self._admission.admit(
                outgoing.sender,
                outgoing.chat_id,
                outgoing.client_message_id,
                new_id=new_id,
                owner=owner,
                rate_per_second=limits.send_rate_per_second,
                burst=limits.send_burst,
                record=outgoing.is_message,
            )
        except REDIS_FAILURES:
            # The claim may have been written (its answer was lost): nothing was produced
            # under it either way.
            self._unproduced.add(new_id)
            raise
        if claim.acknowledged:
            return Accepted(claim.message_id, timestamp_ms(claim.message_id), duplicate=True)
        if not claim.new and claim.owner == owner and self._unproduced.take(claim.message_id):
            # Our own claim, from an attempt of this process that never produced: no copy can
            # be anywhere, so there is nothing to settle (which would wait out the producer's
            # delivery timeout): it is produced now, as a new claim would be.
            claim = dataclasses.replace(claim, new=True)
        if not claim.new:
            owner_alive = claim.owner is not None and (
                claim.owner == owner
                or await leases.held(self._redis, claim.owner.worker_id, claim.owner.token)
            )
            if owner_alive and claim.owner != owner:
                raise Unavailable(
                    f"message {claim.message_id} is being sent by another server; retry in a moment"
                )
        if outgoing.prepare is not None:
            try:
                prepared = await outgoing.prepare(claim)
            except ChatError:
                if claim.new:
                    await self._admission.release(claim)
                raise
            if prepared is None:  # the change turned out to change nothing
                await self._admission.release(claim)
                return Accepted(0, 0, duplicate=False)
            outgoing, claim = prepared
        message_id = claim.message_id
        accepted = Accepted(message_id, timestamp_ms(message_id), duplicate=False)
        if claim.new:
            if not trace.get_current_span().is_recording():
                # An unsampled send does no span work at all.
                async with self._hold.producing():
                    await self._produce(claim, self.records(outgoing, message_id))
            else:
                with (
                    tracer.start_as_current_span(
                        "messaging.send",
                        attributes={
                            "chat.id": outgoing.chat_id,
                            "chat.message_id": str(message_id),
                        },
                    ),
                    tracer.start_as_current_span(
                        f"{self._topic} publish",
                        kind=trace.SpanKind.PRODUCER,
                        attributes={
                            "messaging.system": "kafka",
                            "messaging.destination.name": self._topic,
                            "messaging.batch.message_count": len(outgoing.recipients),
                        },
                    ),
                ):
                    # The record headers carry the producer span's context.
                    async with self._hold.producing():
                        await self._produce(claim, self.records(outgoing, message_id))
        else:
            async with self._hold.producing():
                claim = await self._settler.settle(
                    claim,
                    owner,
                    lambda missing: self.records(outgoing, message_id, missing),
                    self._partitioning.get(),
                )
        self._acknowledge_later(key, claim)
        return dataclasses.replace(accepted, duplicate=not claim.new)

    async def _fenced(self, outgoing: Outgoing, message_id: int) -> tuple[Outgoing, int]:
        """The group message with recipients of the membership version in force at its id
        (``messaging/groups/fence.py``), and that id; waits out a change being written."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        chat_id = outgoing.chat_id
        while True:
            outcome = await self._fence.admit(chat_id, outgoing.version, message_id)
            if outcome.passed:
                return outgoing, message_id
            if outcome.floor is not None:
                self._ids.advance_past(outcome.floor)
                message_id = self._mint()
                continue
            chat = await self._directory.refresh(chat_id)
            if outcome.unknown or (outcome.version or 0) < chat.version:
                # Redis knows nothing of the group, or less than Cassandra: it lost writes.
                await self._fence.seed(chat_id, chat.version, chat.last_change)
            elif outcome.version is not None and outcome.version > chat.version:
                # A change is being written to Cassandra: wait for it.
                waited = loop.time() - started
                if waited > STALLED_SECONDS:
                    await self._undo_dead_change(chat_id, chat.version)
                if waited > FENCE_WAIT_SECONDS:
                    raise Unavailable(
                        f"the members of chat {chat_id!r} are changing; retry in a moment"
                    )
                await asyncio.sleep(0.01)
            if outgoing.sender not in chat.members:
                raise PermissionDenied(f"you are not a member of chat {chat_id!r}")
            outgoing = dataclasses.replace(outgoing, recipients=chat.members, version=chat.version)

    async def _undo_dead_change(self, chat_id: str, version: int) -> None:
        """A change fenced at ``version`` + 1 whose process died before writing it would hold
        the group's sends for ever: undo its step (its retry writes it later, under a new
        id)."""
        found = await self._fence.changing(chat_id)
        if found is None or found[0] != version + 1 or ":" not in found[2]:
            return
        worker, token = found[2].split(":", 1)
        if await leases.held(self._redis, int(worker), token):
            return
        if await self._fence.rollback(chat_id, version, found[1]):
            logger.warning(
                "undid change %d of %s: its process died before writing it", found[1], chat_id
            )

    def _mint(self) -> int:
        try:
            return self._ids.next_id()
        except LeaseLost as exc:
            raise Unavailable(f"this server cannot assign message ids right now: {exc}") from None

    def in_flight(self) -> int:
        """Sends between admission and their claim's acknowledgement (bounded: MAX_IN_FLIGHT)."""
        return len(self._attempts)

    def records(
        self, outgoing: Outgoing, message_id: int, recipients: frozenset[int] | None = None
    ) -> list[Record]:
        """The entry's records: a copy per recipient in a direct chat, a record per partition
        holding recipients in a group (``chatlib/deliveries.py``; a copy per recipient there
        too while ``features.group_records`` is off, during an upgrade)."""
        partitions = self._partitioning.get().partitions
        # Only a sampled trace travels on: consumers open spans for nothing else.
        headers = kafka_headers() if trace.get_current_span().is_recording() else None
        targets = sorted(outgoing.recipients if recipients is None else recipients)
        if outgoing.kind == "group" and self._features.get().group_records:
            by_partition: dict[int, list[int]] = {}
            for recipient in targets:
                by_partition.setdefault(partition_for(recipient, partitions), []).append(recipient)
            return [
                Record(self._topic, key, value, partition, headers)
                for partition, key, value in deliveries.encode_group(
                    outgoing.entry, message_id, by_partition
                )
            ]
        copies = deliveries.encode(outgoing.entry, message_id, targets)
        return [
            Record(self._topic, c.key, c.value, partition_for(c.recipient, partitions), headers)
            for c in copies
        ]

    async def publish(self, outgoing: Outgoing, message_id: int) -> None:
        """Produce a log entry that needs no claim (it is idempotent downstream as it is)."""
        try:
            async with self._hold.producing():
                await self._producer.send(self.records(outgoing, message_id))
        except ProduceFailed as exc:
            raise Unavailable(f"Kafka did not confirm it ({exc}); retry") from None

    async def _produce(self, claim: Claim, records: list[Record]) -> None:
        try:
            await self._producer.send(records)
        except ProduceFailed as exc:
            if not exc.uncertain:
                # Nothing was written: free the claim, so a retry is a fresh send at once.
                self._unproduced.add(claim.message_id)  # in case the release does not land
                await self._admission.release(claim)
            raise Unavailable(
                f"message {claim.message_id} was not confirmed by Kafka ({exc}); retry with the"
                " same client_message_id"
            ) from None

    def _finished(self, key: tuple[int, str, str], attempt: asyncio.Future[Accepted]) -> None:
        failed = attempt.cancelled() or attempt.exception() is not None
        if failed or key not in self._acknowledging:
            # A failed attempt is forgotten at once (the next retry looks at the claim again),
            # and so is one that found its claim acknowledged already.
            self._attempts.pop(key, None)

    def _acknowledge_later(self, key: tuple[int, str, str], claim: Claim) -> None:
        self._unacknowledged.append((key, claim))
        self._acknowledging.add(key)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._write_acknowledgements())

    async def _write_acknowledgements(self) -> None:
        """Mark finished sends' claims acknowledged, all that finished meanwhile at once."""
        await asyncio.sleep(ACK_DELAY_SECONDS)  # let the sends finishing meanwhile join in
        while self._unacknowledged:
            batch, self._unacknowledged = self._unacknowledged, []
            try:
                await self._admission.acknowledge([claim for _, claim in batch])
            except REDIS_FAILURES as exc:
                logger.warning("acknowledging %d claims failed, retrying: %s", len(batch), exc)
                self._unacknowledged = batch + self._unacknowledged
                await asyncio.sleep(ACK_RETRY_SECONDS)
                continue
            for key, _ in batch:
                self._acknowledging.discard(key)
                self._attempts.pop(key, None)
