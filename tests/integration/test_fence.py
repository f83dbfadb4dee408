"""The membership fence's scripts against Redis (messaging/groups/fence.py)."""

from __future__ import annotations

import uuid

from chatlib.redis_wire import RedisWire
from messaging.groups.fence import Fence
from tests.integration.conftest import Endpoints

#: Real ids are above 2**53: the scripts must not compare them as Lua numbers.
BASE = 118_409_798_625_000_000


async def test_sends_and_changes_are_ordered_by_version_and_id(endpoints: Endpoints) -> None:
    wire = RedisWire(endpoints.redis)
    fence = Fence(wire)
    chat = f"g:{uuid.uuid4().int % 10**12}"
    try:
        assert (await fence.admit(chat, 1, BASE + 1)).unknown
        created = await fence.change(chat, 0, BASE + 10, "1:a")  # a new group: no hash yet
        assert created.passed
        assert (await fence.change(chat, 0, BASE + 10, "1:a")).passed  # its retry
        assert (await fence.admit(chat, 1, BASE + 10)).floor == BASE + 10  # not above it
        assert (await fence.admit(chat, 1, BASE + 12)).passed
        assert (await fence.admit(chat, 0, BASE + 13)).version == 1  # stale membership
        # A change must be above every admitted id; these differ only past 2**53.
        assert (await fence.change(chat, 1, BASE + 11, "1:a")).floor == BASE + 12
        assert (await fence.change(chat, 1, BASE + 13, "1:a")).passed
        assert (await fence.admit(chat, 1, BASE + 14)).version == 2
        assert (await fence.change(chat, 1, BASE + 20, "1:a")).version == 2  # another came first
        assert await fence.changing(chat) == (2, BASE + 13, "1:a")
        # Undoing the change (its process died before writing it) puts the version back and
        # keeps ids above it.
        assert await fence.rollback(chat, 1, BASE + 13)
        assert not await fence.rollback(chat, 1, BASE + 13)
        assert (await fence.admit(chat, 1, BASE + 13)).floor == BASE + 13
        assert (await fence.admit(chat, 1, BASE + 15)).passed
        # Seeding from Cassandra never moves the version or the ids back.
        await fence.seed(chat, 1, BASE)
        assert (await fence.admit(chat, 1, BASE + 16)).passed
        await fence.seed(chat, 5, BASE + 50)
        assert (await fence.admit(chat, 5, BASE + 40)).floor == BASE + 50
    finally:
        await wire.call(b"DEL", f"chat:group:{{{chat}}}")
        wire.close()
