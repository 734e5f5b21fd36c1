-- Extends a permit if this exact permit (holder id and token) still holds (after token.lua
-- and permits.lua). An expired permit is dropped, never revived.
-- KEYS[1] permits (ZSET), KEYS[2] the limit
-- ARGV[1] "<holder>:<token>[:<label>]" of the permit, ARGV[2] TTL in milliseconds
-- Returns {1} when extended, else {0}.
local now = server_micros()
if not is_live(KEYS[1], KEYS[2], ARGV[1], now) then
  return {0}
end
redis.call('ZADD', KEYS[1], digits_of(now + tonumber(ARGV[2]) * 1000), ARGV[1])
expire_with_last(KEYS[1], KEYS[2], now)
return {1}
