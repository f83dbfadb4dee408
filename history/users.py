"""Registering users, and changing them: the username reserved in Cassandra, the user
announced on the users topic (what a rebuilt keyspace learns them from), then their row
written. A change (a profile, a password) is the user's whole newest record on the topic,
then the row: the compacted topic keeps the newest record of each user.

The order makes the log hold exactly the users who exist: a name is reserved first (a
lightweight transaction decides between two registrations of one name), the record is in
Kafka before the user row is written and before the caller is answered, and a name whose
record Kafka refused is given back.
"""

from __future__ import annotations

import time
from datetime import UTC

from chatlib import user_records
from chatlib.errors import NotFound, Unavailable
from chatlib.ids import unsigned
from chatlib.kafka import AsyncProducer, ProduceFailed, Record
from history.store import HistoryStore


class UserRegistry:
    def __init__(self, store: HistoryStore, producer: AsyncProducer, topic: str) -> None:
        self._store = store
        self._producer = producer
        self._topic = topic

    async def create(self, user_id: int, username: str, password_hash: str) -> bool:
        """False if the username is taken."""
        if not await self._store.reserve_name(username, user_id):
            return False
        record = user_records.user(user_id, username, password_hash, int(time.time() * 1000))
        key, value = user_records.encode(record)
        try:
            await self._producer.send([Record(self._topic, key, value, -1)])
        except ProduceFailed as exc:
            if exc.uncertain:
                # Kafka may hold it: the user exists (logging in works), the caller is told.
                await self._store.insert_user(record, with_name=False, registering=True)
                raise Unavailable(
                    f"registering {username!r} may not have completed ({exc}); try logging in"
                ) from None
            await self._store.release_name(username, user_id)
            raise Unavailable(f"the user could not be recorded ({exc}); retry") from None
        await self._store.insert_user(record, with_name=False, registering=True)
        return True

    async def update(
        self,
        user_id: int,
        *,
        display_name: str | None = None,
        password_hash: str = "",
        avatar_id: int | None = None,
    ) -> user_records.UserRecord:
        """The user with what is given changed: recorded on the users topic, then the row."""
        row = await self._store.user_by_id(user_id)
        if row is None or row.username is None:
            raise NotFound(f"no user {user_id}")
        created = row.created_at
        record = user_records.user(
            user_id,
            row.username,
            password_hash or row.password_hash,
            # The driver gives a timestamp as a naive datetime in UTC.
            int(created.replace(tzinfo=UTC).timestamp() * 1000) if created else 0,
        )
        record.display_name = row.display_name or "" if display_name is None else display_name
        record.avatar_id = unsigned(row.avatar_id or 0) if avatar_id is None else avatar_id
        key, value = user_records.encode(record)
        try:
            await self._producer.send([Record(self._topic, key, value, -1)])
        except ProduceFailed as exc:
            raise Unavailable(f"the change could not be recorded ({exc}); retry") from None
        await self._store.insert_user(record, with_name=False)
        return record
