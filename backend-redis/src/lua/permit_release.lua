-- Frees a permit if this exact permit (holder id and token) still holds, and announces it
-- (after token.lua, permits.lua and announce.lua).
-- KEYS[1] permits (ZSET), KEYS[2] the limit
-- ARGV[1] "<holder>:<token>[:<label>]" of the permit, ARGV[2] the semaphore's permit release
-- channel, ARGV[3] the semaphore's name, ARGV[4] (optional) "sharded": announce with SPUBLISH
-- (Redis Cluster) instead of PUBLISH
-- Returns {1} when freed, else {0}.
local now = server_micros()
if not is_live(KEYS[1], KEYS[2], ARGV[1], now) then
  return {0}
end
redis.call('ZREM', KEYS[1], ARGV[1])
drop_expired(KEYS[1], KEYS[2], now)
announce(ARGV[2], ARGV[3], ARGV[4])
return {1}
