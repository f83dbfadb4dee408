"""Per-user send rate limiting, one token bucket per user in Redis.

Every messaging server checks the same bucket (``chat:rate:<user>``) with one atomic script
that reads the clock of Redis itself, so the limit holds for a user whose sends land on
several servers at once and no server's clock skew matters. Rate and burst come from the live
``limits`` section and apply from the next send.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from chatlib.errors import ResourceExhausted, Unavailable

# KEYS[1] bucket; ARGV rate per second, burst. Returns 0 when a token was taken, else the
# milliseconds until one will be there.
TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - at) * rate / 1000)
if tokens < 1 then
  return math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', tostring(now_ms))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return 0
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._take = client.register_script(TAKE)

    async def take(self, user_id: int, rate_per_second: float, burst: int) -> None:
        """Take one send from the user's bucket, or raise ResourceExhausted with the wait."""
        try:
            wait_ms = int(
                await self._take(keys=[f"chat:rate:{user_id}"], args=[rate_per_second, burst])
            )
        except (aioredis.RedisError, OSError) as exc:
            raise Unavailable(f"rate limiter unavailable: {exc}") from None
        if wait_ms > 0:
            raise ResourceExhausted(
                f"send rate limit reached ({rate_per_second:g} messages per second, burst"
                f" {burst}); retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
            )
