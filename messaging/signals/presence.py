"""Presence: online while a user has a live stream on any server, else offline since when.

Kept in Redis, never in Cassandra:

* ``chat:presence:{user}`` (``chatlib/presence_state.py``): a hash of server name -> that
  server's live streams of the user, and ``seen`` -> when the last one ended (ms);
* ``chat:online:{server}``: the users with a stream on that server (who to mark offline if
  it dies);
* ``chat:alive:{server}``: set every ``BEAT_SECONDS`` for ``ALIVE_SECONDS``.

Each server writes its own counts, batched: the registry says when a user's streams here went
from none to some (at once) or from some to none (after ``GRACE_SECONDS``: a client that
reconnects, or follows its partition to another server, does not blink offline). One script
per user sets this server's count and says whether the user came online or went offline
overall, so a user with streams on two servers is online once and goes offline with the last.

A server that dies cannot say its users went offline: every ``BEAT_SECONDS`` each server
looks for servers of the partitioning whose ``alive`` key expired and takes their users off
(``SPOP``, so once), with the same script. The dead server's key expires ``ALIVE_SECONDS``
after its last beat (which was up to ``BEAT_SECONDS`` before it died), and the survivors
look every ``BEAT_SECONDS``: a user whose server died is shown offline 7 to 13 s later. A
server starting under a name takes that name's leftovers off first.

Changes are told (``presence`` events) to everyone sharing a direct chat with the user or a
group of at most ``PRESENCE_GROUP_LIMIT`` members; GetPresence answers the rest on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

import redis.asyncio as aioredis

from chatlib import presence_state
from chatlib.chat_ids import direct_members
from chatlib.errors import InvalidArgument, PermissionDenied
from chatlib.live_config import LiveSection
from chatlib.partitioning import Partitioning
from chatlib.presence_state import MAX_ASKED, presence_key
from messaging.chats import ChatDirectory
from messaging.history_api import HistoryApi
from messaging.signals.channel import Signals
from messaging.streams.registry import StreamRegistry
from protos.chat.v1 import messaging_pb2

logger = logging.getLogger(__name__)

BEAT_SECONDS = 3.0
ALIVE_SECONDS = 10
GRACE_SECONDS = 2.0
PRESENCE_GROUP_LIMIT = 100
#: Presence changes told at once (each reads the user's chats from Cassandra).
TELL_AT_ONCE = 64
#: Short: a chat opened since is missed by presence events until then.
CONTACTS_SECONDS = 5.0
CACHED_CONTACTS = 10_000

# KEYS: presence hash, this server's online set. ARGV: server, user, count, now (ms).
# Returns 1 if the user came online, -1 if they went offline, 0 otherwise.
_SET_COUNT = """
local before = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if field ~= 'seen' then before = before + 1 end
end
local count = tonumber(ARGV[3])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
  redis.call('SADD', KEYS[2], ARGV[2])
  if before == 0 then return 1 end
  return 0
end
local had = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if had == 1 and before == 1 then
  redis.call('HSET', KEYS[1], 'seen', ARGV[4])
  return -1
end
return 0
"""


def online_key(server: str) -> str:
    return f"chat:online:{server}"


def alive_key(server: str) -> str:
    return f"chat:alive:{server}"


class Presence:
    def __init__(
        self,
        server_name: str,
        redis: aioredis.Redis,
        history: HistoryApi,
        directory: ChatDirectory,
        signals: Signals,
        partitioning: LiveSection[Partitioning],
        registry: StreamRegistry,
    ) -> None:
        self._server = server_name
        self._redis = redis
        self._history = history
        self._directory = directory
        self._signals = signals
        self._partitioning = partitioning
        self._registry = registry
        self._set_count = redis.register_script(_SET_COUNT)
        #: Users whose count here changed and is not written yet.
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._contacts: OrderedDict[int, tuple[frozenset[int], float]] = OrderedDict()
        registry.on_change(self._changed)

    async def run(self, stop: asyncio.Event) -> None:
        """Write counts as they change, beat, and take dead servers' users off, until stop."""
        beat_at = 0.0
        reaped_myself = False
        while not stop.is_set():
            try:
                if not reaped_myself:
                    await self._reap(self._server)
                    reaped_myself = True
                if self._dirty:
                    batch, self._dirty = self._dirty, set()
                    try:
                        await self._write(batch)
                    except BaseException:
                        self._dirty |= batch
                        raise
                if time.monotonic() >= beat_at:
                    await self._redis.set(alive_key(self._server), 1, ex=ALIVE_SECONDS)
                    for server in self._partitioning.get().servers:
                        if server.name != self._server:
                            await self._reap(server.name, only_if_dead=True)
                    beat_at = time.monotonic() + BEAT_SECONDS
            except (aioredis.RedisError, OSError) as exc:
                logger.warning("presence not written, retrying: %s", exc)
                await asyncio.sleep(1.0)
            except Exception:  # the loop must outlive what it does not foresee
                logger.exception("presence not written, retrying")
                await asyncio.sleep(1.0)
            self._wake.clear()
            if not self._dirty:
                # Until the next beat at the latest: writes in between must not push it back
                # (a dead server's users would stay online longer).
                pause = max(0.05, beat_at - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)

    async def close(self) -> None:
        """This server's users are offline now (unless on another server)."""
        users = set(self._registry.users())
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._write(users, force_offline=True)
            await self._redis.delete(alive_key(self._server))

    def _changed(self, user: int, streams: int) -> None:
        if streams:
            self._mark(user)
        else:
            asyncio.get_running_loop().call_later(GRACE_SECONDS, self._mark, user)

    def _mark(self, user: int) -> None:
        self._dirty.add(user)
        self._wake.set()

    async def _write(self, users: set[int], *, force_offline: bool = False) -> None:
        if not users:
            return
        now = int(time.time() * 1000)
        ordered = sorted(users)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in ordered:
                count = 0 if force_offline else self._registry.streams_of(user)
                keys = [presence_key(user), online_key(self._server)]
                await self._set_count(keys, [self._server, user, count, now], client=pipe)
            outcomes = await pipe.execute()
        changes = [
            (user, outcome > 0, 0 if outcome > 0 else now)
            for user, outcome in zip(ordered, outcomes, strict=True)
            if outcome
        ]
        await self._tell_all(changes)

    async def _reap(self, server: str, *, only_if_dead: bool = False) -> None:
        """Take a (dead, or this one's former self) server's users off."""
        if only_if_dead and await self._redis.exists(alive_key(server)):
            return
        while True:
            users = await self._redis.spop(online_key(server), 500)
            if not users:
                return
            now = int(time.time() * 1000)
            gone = []
            for raw in users:
                user = int(raw)
                keys = [presence_key(user), online_key(server)]
                if await self._set_count(keys, [server, user, 0, now]) < 0:
                    gone.append((user, False, now))
            await self._tell_all(gone)
            logger.info("took %d users of server %s offline", len(users), server)

    async def _tell_all(self, changes: list[tuple[int, bool, int]]) -> None:
        """Tell many changes (a server's users after it restarted or died) TELL_AT_ONCE at a
        time: each reads the user's chats first."""
        for start in range(0, len(changes), TELL_AT_ONCE):
            await asyncio.gather(
                *(
                    self._tell(user, online=online, seen=seen)
                    for user, online, seen in changes[start : start + TELL_AT_ONCE]
                )
            )

    async def _tell(self, user: int, *, online: bool, seen: int) -> None:
        try:
            contacts = await self.contacts(user)
        except Exception as exc:  # noqa: BLE001 - presence is best effort; asking still works
            logger.warning("presence of %d not told: %s", user, exc)
            return
        event = messaging_pb2.ClientEvent(
            presence=messaging_pb2.Presence(user_id=user, online=online, last_seen_ms=seen)
        )
        await self._signals.send(contacts, event)

    async def tell_contacts(self, user: int, event: messaging_pb2.ClientEvent) -> None:
        """Send an event about the user (a profile change) to their contacts' streams, read
        afresh: a chat opened in the last CONTACTS_SECONDS counts too."""
        contacts, _ = await self._read_contacts(user)
        await self._signals.send(contacts, event)

    async def contacts(self, user: int) -> frozenset[int]:
        """Who shares a direct chat, or a group of at most PRESENCE_GROUP_LIMIT, with the
        user (remembered for CONTACTS_SECONDS)."""
        known = self._contacts.get(user)
        if known is not None and time.monotonic() - known[1] < CONTACTS_SECONDS:
            return known[0]
        return (await self._read_contacts(user))[0]

    async def _read_contacts(self, user: int) -> tuple[frozenset[int], frozenset[int]]:
        """The user's contacts (remembered) and everyone sharing any chat with them, from one
        read of their chat list."""
        told: set[int] = set()
        shared: set[int] = set()
        for membership in await self._history.memberships(user):
            chat_id = membership.chat_id
            if membership.kind == "direct":
                told |= direct_members(chat_id)
            elif not membership.left:
                chat = await self._directory.chat(chat_id)
                (told if len(chat.members) <= PRESENCE_GROUP_LIMIT else shared).update(chat.members)
        told.discard(user)
        contacts = frozenset(told)
        self._contacts[user] = (contacts, time.monotonic())
        if len(self._contacts) > CACHED_CONTACTS:
            self._contacts.popitem(last=False)
        return contacts, contacts | shared

    async def get(self, asker: int, users: list[int]) -> list[messaging_pb2.Presence]:
        """The presence of people the asker shares a chat with (any size of group)."""
        if len(users) > MAX_ASKED:
            raise InvalidArgument(f"user_ids names {len(users)} users; at most {MAX_ASKED}")
        strangers = [u for u in users if u != asker and u not in await self.contacts(asker)]
        if strangers:
            # The remembered contacts may predate a chat just opened; and members of large
            # groups are not contacts (no events), but may be asked about.
            _, shared = await self._read_contacts(asker)
            strangers = [u for u in strangers if u not in shared]
        if strangers:
            raise PermissionDenied(f"you share no chat with user {strangers[0]}")
        found = await presence_state.read(self._redis, users)
        return [
            messaging_pb2.Presence(user_id=user, online=online, last_seen_ms=seen)
            for user, (online, seen) in zip(users, found, strict=True)
        ]
