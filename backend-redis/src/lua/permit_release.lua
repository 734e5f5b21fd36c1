-- Frees a permit if this exact permit (holder id and token) still holds, and announces it
-- (after token.lua and permits.lua).
-- KEYS[1] permits (ZSET), KEYS[2] permit info (HASH)
-- ARGV[1] "<holder>:<token>" of the permit, ARGV[2] the semaphore's permit release channel,
-- ARGV[3] the semaphore's name, ARGV[4] (optional) "sharded": announce with SPUBLISH (Redis
-- Cluster) instead of PUBLISH
-- Returns {1} when freed, else {0}.
local now = server_micros()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  drop_expired(KEYS[1], KEYS[2], now)
  return {0}
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
drop_expired(KEYS[1], KEYS[2], now)
if ARGV[4] == 'sharded' then
  -- pcall: a Redis before 7.0 has no SPUBLISH; its waiters poll.
  redis.pcall('SPUBLISH', ARGV[2], ARGV[3])
else
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return {1}
