-- Grants a permit of a semaphore if fewer than the limit hold, and mints its fencing token,
-- atomically (after token.lua and permits.lua).
-- KEYS[1] permits (ZSET), KEYS[2] the limit, KEYS[3] permit token counter (one slot)
-- ARGV[1] holder id (hex), ARGV[2] TTL in milliseconds, ARGV[3] limit, ARGV[4] ":<owner label>"
-- or empty
-- Returns {1, "<holder>:<token>[:<label>]"} when granted, {0, microseconds until the first
-- permit expires} when every permit is taken (a waiter sleeps that long at most, without reading
-- the permits), {2, limit} when the live permits hold under another limit.
local now = server_micros()
drop_expired(KEYS[1], KEYS[2], now)
local limit = tonumber(ARGV[3])
local held = redis.call('GET', KEYS[2])
if held and tonumber(held) ~= limit then
  return {2, held}
end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, digits_of(tonumber(first[2]) - now)}
end
local token, failed = mint_token(KEYS[3], now)
if not token then
  return failed
end
local member = ARGV[1] .. ':' .. token .. ARGV[4]
redis.call('ZADD', KEYS[1], digits_of(now + tonumber(ARGV[2]) * 1000), member)
redis.call('SET', KEYS[2], ARGV[3])
expire_with_last(KEYS[1], KEYS[2], now)
return {1, member}
