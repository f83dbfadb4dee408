"""A small Redis client for the hot path: one connection, every command written as it comes.

Each send makes one Redis call before Kafka (``messaging/send/admission.py``). Through redis-py's
asyncio client a script call costs about 115 µs of this process's CPU (connection checkout,
retry wrappers, argument filtering); written straight onto one connection and parsed by hiredis
(the Redis project's C parser) it costs about 30 µs alone and about 10 µs when several are in
flight, because concurrent commands share writes and reads (Redis answers in order, so replies
are matched first in, first out). Everything that is not on the hot path keeps using redis-py.

A call fails with ``RedisUnavailable`` when the connection fails or a reply takes longer than
``timeout`` (the connection is then dropped, failing every call on it); the next call
connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from collections import deque
from typing import Any, cast

import hiredis

#: How often the oldest call waiting for a reply is checked against the timeout.
WATCH_SECONDS = 0.25


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
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=RedisReplyError)
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.lost: Exception | None = None
        #: Commands issued during the current turn of the event loop, written together at
        #: its end: under load many sends are admitted in one turn, and share one write.
        self.corked: list[bytes] = []

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
            futures.append(future)
        if not self.corked:
            loop.call_soon(self.flush)
        self.corked.append(payload)
        return futures

    def flush(self) -> None:
        corked, self.corked = self.corked, []
        if self.transport is not None and self.lost is None:
            self.transport.write(b"".join(corked))


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


class RedisWire:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported, not {url!r}")
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._password = urllib.parse.unquote(parsed.password) if parsed.password else None
        self._username = urllib.parse.unquote(parsed.username) if parsed.username else None
        self._db = int(parsed.path.strip("/") or 0)
        self._timeout = timeout
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
            loop = asyncio.get_running_loop()
            try:
                _, connection = await asyncio.wait_for(
                    loop.create_connection(_Connection, self._host, self._port), self._timeout
                )
            except (OSError, TimeoutError) as exc:
                raise RedisUnavailable(
                    f"cannot connect to Redis at {self._host}:{self._port}: {exc}"
                ) from None
            setup: list[asyncio.Future[Any]] = []
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                setup += connection.send(encode((b"AUTH", *auth)))
            if self._db:
                setup += connection.send(encode((b"SELECT", self._db)))
            try:
                for reply in setup:
                    await asyncio.wait_for(reply, self._timeout)
            except (RedisReplyError, RedisUnavailable, TimeoutError) as exc:
                if connection.transport is not None:
                    connection.transport.close()
                raise RedisUnavailable(f"setting up the Redis connection failed: {exc}") from None
            self._connection = connection
            if self._watch is None:
                self._watch = loop.call_later(WATCH_SECONDS, self._check)
            return connection

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
