-- Extends a permit if this exact permit (holder id and token) still holds (after token.lua
-- and permits.lua). An expired permit is dropped, never revived.
-- KEYS[1] permits (ZSET), KEYS[2] permit info (HASH)
-- ARGV[1] "<holder>:<token>" of the permit, ARGV[2] TTL in milliseconds
-- Returns {1} when extended, else {0}.
local now = server_micros()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  drop_expired(KEYS[1], KEYS[2], now)
  return {0}
end
redis.call('ZADD', KEYS[1], digits_of(now + tonumber(ARGV[2]) * 1000), ARGV[1])
expire_with_last(KEYS[1], KEYS[2], now)
return {1}
