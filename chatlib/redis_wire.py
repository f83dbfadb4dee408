"""A small Redis client for the hot path: one connection, every command written as it comes.

Each send makes one Redis call before Kafka (``messaging/send/admission.py``). Through redis-py's
asyncio client a script call costs about 115 µs of this process's CPU (connection checkout,
retry wrappers, argument filtering); written straight onto one connection and parsed by hiredis
(the Redis project's C parser) it costs about 30 µs alone and about 10 µs when several are in
flight, because concurrent commands share writes and reads (Redis answers in order, so replies
are matched first in, first out). Everything that is not on the hot path keeps using redis-py.

A call fails with ``RedisUnavailable`` when the connection fails or a reply takes longer than
``timeout`` (the connection is then dropped, failing every call on it); the next call
connects again: to the one node of the URL, or to the primary its sentinels name now (after a
failover, a command answered READONLY by the demoted primary drops the connection too). With
``durable``, every write of commands is followed by ``WAIT 1``, and their replies are handed out
only once a replica acknowledged them: a claim or a fence answered here survives a failover.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from collections import deque
from typing import Any, cast

import hiredis

from chatlib.settings import RedisAccess

#: How often the oldest call waiting for a reply is checked against the timeout.
WATCH_SECONDS = 0.25
#: How long a write waits for a replica to acknowledge it (redis_client.WAIT_MS).
WAIT_MS = 1000


class RedisUnavailable(Exception):
    """No reply from Redis (connection refused, lost, or too slow)."""


class RedisReplyError(Exception):
    """Redis answered with an error (a script error, a wrong type)."""


class Script:
    """A Lua script called by its SHA1, loaded on first use and again after a Redis restart."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()


class _Connection(asyncio.Protocol):
    def __init__(self, durable: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.lost: Exception | None = None
        #: Commands issued during the current turn of the event loop, written together at
        #: its end: under load many sends are admitted in one turn, and share one write.
        self.corked: list[bytes] = []
        #: With ``durable``: the callers' futures of the corked commands and the futures of
        #: their replies, handed over once the WAIT written after them is answered.
        self.durable = durable
        self.held: list[tuple[asyncio.Future[Any], asyncio.Future[Any]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future, _ = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, RedisReplyError):
                if str(reply).startswith("READONLY") and self.transport is not None:
                    # A primary demoted by a failover: find the new one on the next call.
                    self.lost = RedisUnavailable("Redis is no longer the primary")
                    self.transport.abort()
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = RedisUnavailable(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
        # Writes queued but never flushed (the connection went between send and flush): their
        # callers are told now, or they would wait for a WAIT that is never sent.
        held, self.held = self.held, []
        for handed, reply in held:
            if reply.done() and not reply.cancelled():
                reply.exception()  # looked at: the caller learns of it through ``handed``
            if not handed.done():
                handed.set_exception(self.lost)

    def send(self, payload: bytes, replies: int = 1) -> list[asyncio.Future[Any]]:
        """Write ``payload`` (``replies`` commands); a future per reply."""
        if self.lost is not None or self.transport is None:
            raise self.lost or RedisUnavailable("not connected to Redis")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures: list[asyncio.Future[Any]] = []
        for _ in range(replies):
            future: asyncio.Future[Any] = loop.create_future()
            self.waiting.append((future, now))
            if self.durable:
                handed: asyncio.Future[Any] = loop.create_future()
                self.held.append((handed, future))
                future = handed
            futures.append(future)
        if not self.corked:
            loop.call_soon(self.flush)
        self.corked.append(payload)
        return futures

    def flush(self) -> None:
        corked, self.corked = self.corked, []
        if self.transport is None or self.lost is not None:
            return
        if self.held:
            held, self.held = self.held, []
            waited: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.waiting.append((waited, time.monotonic()))
            corked.append(WAIT_FOR_A_REPLICA)
            waited.add_done_callback(lambda answer: _hand_over(held, answer))
        self.transport.write(b"".join(corked))


def _hand_over(
    held: list[tuple[asyncio.Future[Any], asyncio.Future[Any]]], answer: asyncio.Future[Any]
) -> None:
    """Give the callers their replies once a replica has the writes (WAIT answered >= 1)."""
    failure: BaseException | None = None
    if answer.cancelled():
        failure = RedisUnavailable("the wait for a replica was cancelled")
    elif answer.exception() is not None:
        failure = answer.exception()
    elif int(answer.result()) < 1:
        failure = RedisUnavailable("no Redis replica acknowledged the write")
    for handed, reply in held:
        if reply.done() and not reply.cancelled():
            reply.exception()  # looked at: its failure is the caller's through ``handed``
        if handed.done():
            continue
        if failure is not None:
            handed.set_exception(failure)
        elif reply.exception() is not None:
            handed.set_exception(cast(BaseException, reply.exception()))
        else:
            handed.set_result(reply.result())


def encode(args: tuple[Any, ...]) -> bytes:
    """A command in the Redis protocol (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            raw = arg
        elif isinstance(arg, str):
            raw = arg.encode()
        else:
            raw = str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


WAIT_FOR_A_REPLICA = encode((b"WAIT", 1, WAIT_MS))


class RedisWire:
    def __init__(
        self, access: RedisAccess, *, timeout: float = 2.0, durable: bool | None = None
    ) -> None:
        """A client of ``access``'s primary; ``durable`` (by default: when it has replicas,
        ``redis_client.replicated``) waits for a replica after every write."""
        parsed = urllib.parse.urlparse(access.url)
        if parsed.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, not {access.url!r}")
        self._access = access
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        login = access.login
        self._password = (
            login.password
            if login
            else (urllib.parse.unquote(parsed.password) if parsed.password else None)
        )
        self._username = (
            login.user
            if login
            else (urllib.parse.unquote(parsed.username) if parsed.username else None)
        )
        self._db = int(parsed.path.strip("/") or 0)
        self._timeout = timeout
        self._durable = bool(access.sentinels) if durable is None else durable
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._watch: asyncio.TimerHandle | None = None

    async def call(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        [reply] = connection.send(encode(args))
        return await reply

    async def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Several commands in one write; their replies in order (the first error raised)."""
        if not commands:
            return []
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connect()
        replies = connection.send(b"".join(encode(c) for c in commands), len(commands))
        return list(await asyncio.gather(*replies))

    async def evalsha(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        try:
            return await self.call(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Not loaded yet (a new or restarted Redis): EVAL loads it for the next calls.
        return await self.call(b"EVAL", script.source, len(keys), *keys, *args)

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and self._connection.lost is None:
                return self._connection  # another caller connected meanwhile
            host, port = await self._primary()
            loop = asyncio.get_running_loop()
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(lambda: _Connection(self._durable), host, port),
                    self._timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(f"cannot connect to Redis at {host}:{port}: {exc}") from None
            setup: list[asyncio.Future[Any]] = []
            connection.durable = False  # setting up is not a write to wait for
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                setup += connection.send(encode((b"AUTH", *auth)))
            if self._db:
                setup += connection.send(encode((b"SELECT", self._db)))
            if self._access.sentinels:
                setup += connection.send(encode((b"ROLE",)))
            try:
                replies = [await asyncio.wait_for(reply, self._timeout) for reply in setup]
            except (RedisReplyError, RedisUnavailable, TimeoutError) as exc:
                if connection.transport is not None:
                    connection.transport.close()
                raise RedisUnavailable(f"setting up the Redis connection failed: {exc}") from None
            if self._access.sentinels and replies[-1][0] != b"master":
                if connection.transport is not None:
                    connection.transport.close()
                raise RedisUnavailable(f"{host}:{port} is not the primary (yet)")
            connection.durable = self._durable
            self._connection = connection
            if self._watch is None:
                self._watch = loop.call_later(WATCH_SECONDS, self._check)
            return connection

    async def _primary(self) -> tuple[str, int]:
        """Where the primary is: the URL's node, or what the first sentinel that answers says."""
        if not self._access.sentinels:
            return self._host, self._port
        problems = []
        for host, port in self._access.sentinels:
            try:
                return await asyncio.wait_for(self._ask_sentinel(host, port), self._timeout)
            except (OSError, TimeoutError, RedisReplyError, ValueError) as exc:
                problems.append(f"{host}:{port}: {exc or type(exc).__name__}")
        raise RedisUnavailable(f"no sentinel named the primary ({'; '.join(problems)})")

    async def _ask_sentinel(self, host: str, port: int) -> tuple[str, int]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            commands: list[tuple[bytes | str, ...]] = []
            if self._access.sentinel_password is not None:
                commands.append((b"AUTH", self._access.sentinel_password))
            commands.append((b"SENTINEL", b"get-master-addr-by-name", self._access.master))
            writer.write(b"".join(encode(c) for c in commands))
            parser = hiredis.Reader(replyError=RedisReplyError)
            replies: list[Any] = []
            while len(replies) < len(commands):
                data = await reader.read(4096)
                if not data:
                    raise ValueError("the sentinel closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if isinstance(reply, RedisReplyError):
                        raise reply
                    replies.append(reply)
            found = replies[-1]
            if not found:
                raise ValueError(f"the sentinel knows no primary {self._access.master!r}")
            return found[0].decode(), int(found[1])
        finally:
            writer.close()

    def _check(self) -> None:
        """Drop a connection whose oldest call has waited longer than the timeout."""
        connection = self._connection
        if connection is not None and connection.waiting and connection.transport is not None:
            _, since = connection.waiting[0]
            if time.monotonic() - since > self._timeout:
                connection.lost = RedisUnavailable(f"no reply from Redis within {self._timeout} s")
                connection.transport.abort()
        self._watch = asyncio.get_running_loop().call_later(WATCH_SECONDS, self._check)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None
