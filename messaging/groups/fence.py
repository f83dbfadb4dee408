"""The membership fence: which version of a group's membership a message was sent under.

A group's log orders messages and changes by id. For every member to receive exactly the
messages sent while they were a member, the recipients of message X must be the membership
in force at X's place in that order. Each messaging server caches memberships, so this needs
one point where a send and a change are put in order: a small Redis hash per group,
``chat:group:{<chat id>}`` with

* ``v``: the membership version (the group's ``version`` in Cassandra, or one ahead while a
  change is being written there);
* ``lc``: the id of the last change;
* ``ma``: the largest message id admitted since.

A send (``admit``) passes only with the version its recipients were computed from and an id
above ``lc``, and raises ``ma``; a change (``change``) passes only with an id above ``ma``, and
moves ``v`` on. Redis runs the scripts one at a time, so every message admitted under version
v has an id between the change that made v and the next one, and a send whose cached
membership is stale is refused until its server has read the new one. A server's cache is
thus checked on every use; nothing needs to reach every server before a change is answered.

Direct chats never change members and never come here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatlib.errors import Unavailable
from chatlib.redis_wire import RedisReplyError, RedisUnavailable, RedisWire, Script

_GT = """
-- Ids are 63-bit: Lua's numbers (doubles) cannot hold them, so they are compared as decimal
-- strings (no leading zeros: the longer is larger, else the lexically larger).
local function gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
"""

# KEYS: the group's hash. ARGV: version the recipients were computed from, the message id.
# {0}: admitted. {1, v}: the version is v. {2, lc}: the id must be above lc. {3}: no hash.
ADMIT = Script(
    _GT
    + """
local state = redis.call('HMGET', KEYS[1], 'v', 'lc', 'ma')
if not state[1] then
  return {3}
end
if state[1] ~= ARGV[1] then
  return {1, state[1]}
end
if not gt(ARGV[2], state[2]) then
  return {2, state[2]}
end
if gt(ARGV[2], state[3]) then
  redis.call('HSET', KEYS[1], 'ma', ARGV[2])
end
return {0}
"""
)

# KEYS: the group's hash. ARGV: the version the change was planned on, the change's id, the
# changing process (its worker lease, field 'o': a stalled change can be undone once it died).
# {0}: the version moved on to ARGV[1] + 1 with this change (or already had, by this change).
# {1, v}: the version is v. {2, floor}: the id must be above floor. {3}: no hash.
# A version of 0 is a group being created: its hash may not exist yet.
CHANGE = Script(
    _GT
    + """
local state = redis.call('HMGET', KEYS[1], 'v', 'lc', 'ma')
if not state[1] then
  if ARGV[1] ~= '0' then
    return {3}
  end
  state = {'0', '0', '0'}
end
local v = tonumber(state[1])
local expected = tonumber(ARGV[1])
if v == expected + 1 and state[2] == ARGV[2] then
  return {0}
end
if v ~= expected then
  return {1, state[1]}
end
local floor = state[2]
if gt(state[3], floor) then floor = state[3] end
if not gt(ARGV[2], floor) then
  return {2, floor}
end
redis.call('HSET', KEYS[1], 'v', tostring(expected + 1), 'lc', ARGV[2], 'ma', ARGV[2], 'o', ARGV[3])
return {0}
"""
)

# KEYS: the group's hash. ARGV: the version a change was planned on, the change's id.
# Undoes that change's step (the version goes back; ids stay above it) if nothing came
# after it. 1 if it was undone.
ROLLBACK = Script("""
local state = redis.call('HMGET', KEYS[1], 'v', 'lc')
if state[1] == tostring(tonumber(ARGV[1]) + 1) and state[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], 'v', ARGV[1])
  return 1
end
return 0
""")

# KEYS: the group's hash. ARGV: version, last change id (both from Cassandra). Writes them
# only where Redis has no version, or an older one (it lost writes); never moves ids back.
SEED = Script(
    _GT
    + """
local state = redis.call('HMGET', KEYS[1], 'v', 'lc', 'ma')
local v = tonumber(state[1] or '-1')
if v >= tonumber(ARGV[1]) then
  return 0
end
local lc = state[2] or '0'
if gt(ARGV[2], lc) then lc = ARGV[2] end
local ma = state[3] or '0'
if gt(lc, ma) then ma = lc end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'lc', lc, 'ma', ma)
return 1
"""
)


@dataclass(frozen=True)
class Outcome:
    """What the fence said: ``passed``; else the version it holds (``version``), the id an id
    must exceed (``floor``), or that it knows nothing of the group (``unknown``)."""

    passed: bool = False
    version: int | None = None
    floor: int | None = None
    unknown: bool = False


PASSED = Outcome(passed=True)
_FAILURES = (RedisUnavailable, RedisReplyError, OSError)


def key_of(chat_id: str) -> str:
    return f"chat:group:{{{chat_id}}}"


class Fence:
    def __init__(self, client: RedisWire) -> None:
        self._client = client

    async def admit(self, chat_id: str, version: int, message_id: int) -> Outcome:
        return await self._run(ADMIT, chat_id, version, message_id)

    async def change(self, chat_id: str, version: int, change_id: int, owner: str) -> Outcome:
        return await self._run(CHANGE, chat_id, version, change_id, owner)

    async def rollback(self, chat_id: str, version: int, change_id: int) -> bool:
        """Undo a change's step whose change will not be written (see ROLLBACK)."""
        return bool(await self._script(ROLLBACK, chat_id, version, change_id))

    async def changing(self, chat_id: str) -> tuple[int, int, str] | None:
        """(version, last change id, changing process) as the fence holds them."""
        reply = await self._call(b"HMGET", key_of(chat_id), b"v", b"lc", b"o")
        if not reply or reply[0] is None:
            return None
        v, lc, owner = (x.decode() if isinstance(x, bytes) else x for x in reply)
        return int(v), int(lc or 0), owner or ""

    async def seed(self, chat_id: str, version: int, last_change_id: int) -> None:
        await self._script(SEED, chat_id, version, last_change_id)

    async def _script(self, script: Script, chat_id: str, *args: Any) -> Any:
        try:
            return await self._client.evalsha(script, [key_of(chat_id)], list(args))
        except _FAILURES as exc:
            raise Unavailable(f"group membership check unavailable: {exc}") from None

    async def _call(self, *command: Any) -> Any:
        try:
            return await self._client.call(*command)
        except _FAILURES as exc:
            raise Unavailable(f"group membership check unavailable: {exc}") from None

    async def _run(self, script: Script, chat_id: str, *args: Any) -> Outcome:
        reply = await self._script(script, chat_id, *args)
        code = int(reply[0])
        if code == 0:
            return PASSED
        if code == 1:
            return Outcome(version=int(reply[1]))
        if code == 2:
            return Outcome(floor=int(reply[1]))
        return Outcome(unknown=True)
