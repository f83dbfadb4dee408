"""Admitting a send: the sender's rate limit and the message's idempotency claim, in one Redis
round trip before anything is produced.

**Claims.** A message is identified by (sender, chat, client message id). Its claim holds the
message id it was given and its state: *pending* (by which process, named by its worker lease)
or *acknowledged* (Kafka has every copy). A retry finds the claim and reuses the id, so a
retried send never becomes a second message.

Claims live in one hash per sender and UTC day (``chat:dedup:{<sender>}:<day>``), keyed by an
8-byte digest of (chat id, client message id), and expire 48 hours after the hash was created:
every claim is kept at least 24 hours, as a client's retry window needs. A lookup reads the
day before, the day and the day after, so two servers whose clocks disagree near midnight find
each other's claims. (A hash field costs about 50 bytes of Redis memory where a key of its own
costs about 210.)

**Rate limit.** One token bucket per user (``chat:rate:{<sender>}``) on Redis's own clock, so
the limit holds across servers and no server's clock skew matters. A retry of a claimed
message takes no token: it is the same message.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from chatlib.errors import ResourceExhausted, Unavailable
from chatlib.redis_wire import RedisReplyError, RedisUnavailable, RedisWire, Script
from messaging.send import sent as sent

logger = logging.getLogger(__name__)
RATE_LIMITED = Counter("messaging_sends_rate_limited_total", "Sends refused by the per-user rate")

DAY_MS = 86_400_000
CLAIM_TTL_SECONDS = 48 * 3600

# KEYS: the rate bucket, the claim hashes of day-1, day, day+1, and for a message its record in
# chat:sent (messaging/send/sent.py). ARGV: rate per second, burst, claim field, the pending
# value for a new claim, the hashes' TTL, and for a message its id, its sender and when its
# record expires.
# Returns {0} for a new claim (written into the day's hash), {1, value, index} for an existing
# one (index 2-4: which hash), {2, wait_ms} when the rate limit refuses.
ADMIT = Script("""
for i = 2, 4 do
  local found = redis.call('HGET', KEYS[i], ARGV[3])
  if found then
    return {1, found, i}
  end
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - at) * rate / 1000)
if tokens < 1 then
  return {2, math.ceil((1 - tokens) * 1000 / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now_ms))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5], 'NX')
if KEYS[5] then
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
  redis.call('PEXPIREAT', KEYS[5], ARGV[8])
end
return {0}
""")

# KEYS: a claim hash. ARGV: field, the value expected, the value to set. 1 if it was swapped.
SWAP = Script("""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
""")


# KEYS: a claim hash, and a message's record in chat:sent. ARGV: field, the value expected, the
# message id. 1 if the claim was removed (and with it the record).
RELEASE = Script("""
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if KEYS[2] then
    redis.call('HDEL', KEYS[2], ARGV[3])
  end
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
""")


@dataclass(frozen=True)
class Owner:
    """A process as claims name it: its worker id and the token of its lease on it."""

    worker_id: int
    token: str

    def encode(self) -> str:
        return f"{self.worker_id}:{self.token}"


@dataclass(frozen=True)
class Claim:
    sender: int
    key: str
    field: bytes
    message_id: int
    #: True when this call created the claim.
    new: bool
    acknowledged: bool
    #: Who is sending it, for a pending claim.
    owner: Owner | None
    #: The stored value, for compare-and-swap.
    value: str
    #: The message's record in chat:sent, when this claim wrote one (``messaging/send/sent.py``).
    record: str | None = None

    def pending_value(self, owner: Owner) -> str:
        return f"{self.message_id}:p:{owner.encode()}"

    def acknowledged_value(self) -> str:
        return f"{self.message_id}:a"


def claim_field(chat_id: str, client_message_id: str) -> bytes:
    return hashlib.blake2b(f"{chat_id}\0{client_message_id}".encode(), digest_size=8).digest()


def claim_keys(sender: int, day: int) -> list[str]:
    # The hash tag keeps a sender's keys in one Redis Cluster slot (a script touches them all).
    return [f"chat:dedup:{{{sender}}}:{d}" for d in (day - 1, day, day + 1)]


def parse(value: str) -> tuple[int, bool, Owner | None]:
    """(message id, acknowledged, owner) of a stored claim value."""
    parts = value.split(":")
    message_id = int(parts[0])
    if parts[1] == "a":
        return message_id, True, None
    return message_id, False, Owner(int(parts[2]), parts[3])


#: What a failed Redis call raises here.
REDIS_FAILURES = (RedisUnavailable, RedisReplyError, OSError)


class Admission:
    def __init__(self, client: RedisWire) -> None:
        self._client = client

    async def admit(
        self,
        sender: int,
        chat_id: str,
        client_message_id: str,
        *,
        new_id: int,
        owner: Owner,
        rate_per_second: float,
        burst: int,
        record: bool = False,
    ) -> Claim:
        """The message's claim: ``new_id`` pending by ``owner`` if it had none, else the one it
        had. With ``record``, a new claim also records the message for amendments
        (``messaging/send/sent.py``). Raises ResourceExhausted (rate limit) or Unavailable
        (Redis)."""
        field = claim_field(chat_id, client_message_id)
        keys = claim_keys(sender, int(time.time() * 1000) // DAY_MS)
        pending = f"{new_id}:p:{owner.encode()}"
        script_keys: list[Any] = [f"chat:rate:{{{sender}}}", *keys]
        args: list[Any] = [rate_per_second, burst, field, pending, CLAIM_TTL_SECONDS]
        written = None
        if record:
            written = sent.key(chat_id, new_id)
            script_keys.append(written)
            args += [new_id, sender, sent.expires_at_ms(new_id)]
        try:
            reply = await self._client.evalsha(ADMIT, script_keys, args)
        except REDIS_FAILURES as exc:
            raise Unavailable(f"send admission unavailable: {exc}") from None
        outcome = int(reply[0])
        if outcome == 2:
            wait_ms = int(reply[1])
            RATE_LIMITED.inc()
            raise ResourceExhausted(
                f"send rate limit reached ({rate_per_second:g} messages per second, burst"
                f" {burst}); retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
            )
        if outcome == 0:
            return Claim(sender, keys[1], field, new_id, True, False, owner, pending, written)
        value = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        message_id, acknowledged, found_owner = parse(value)
        key = keys[int(reply[2]) - 2]
        return Claim(sender, key, field, message_id, False, acknowledged, found_owner, value)

    async def take_over(self, claim: Claim, owner: Owner) -> Claim | None:
        """Make ``owner`` the claim's sender if nobody changed it since it was read."""
        return await self.reissue(claim, claim.message_id, owner)

    async def reissue(self, claim: Claim, new_id: int, owner: Owner) -> Claim | None:
        """Give a claim that nothing was produced for yet another id, if nobody changed it
        since it was read (the membership fence wants a larger one)."""
        value = f"{new_id}:p:{owner.encode()}"
        try:
            swapped = await self._client.evalsha(
                SWAP, [claim.key], [claim.field, claim.value, value]
            )
        except REDIS_FAILURES as exc:
            raise Unavailable(f"send admission unavailable: {exc}") from None
        if not swapped:
            return None
        # Only changes move to another id, and they have no record (messaging/send/sent.py).
        record = claim.record if new_id == claim.message_id else None
        return Claim(
            claim.sender, claim.key, claim.field, new_id, claim.new, False, owner, value, record
        )

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose message certainly reached nobody, and its record (best
        effort: a claim left behind only makes the next retry settle it first)."""
        keys = [claim.key] if claim.record is None else [claim.key, claim.record]
        try:
            await self._client.evalsha(RELEASE, keys, [claim.field, claim.value, claim.message_id])
        except REDIS_FAILURES as exc:
            logger.warning("releasing the claim of message %d failed: %s", claim.message_id, exc)

    async def acknowledge(self, claims: list[Claim]) -> None:
        """Mark claims acknowledged (one write and one round trip for all of them)."""
        await self._client.pipeline(
            [(b"HSET", claim.key, claim.field, claim.acknowledged_value()) for claim in claims]
        )
