-- Frees a grant if this exact grant (holder id and token) still holds, and announces it (after
-- announce.lua).
-- KEYS[1] lock key
-- ARGV[1] "<holder>:<token>" of the grant, ARGV[2] the lock's release channel, ARGV[3] lock name,
-- ARGV[4] (optional) "sharded": announce with SPUBLISH (Redis Cluster: only the slot's shard hears
-- it; the channel carries the lock's hash tag) instead of PUBLISH
-- Returns {1} when freed, else {0, current value or false}.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  announce(ARGV[2], ARGV[3], ARGV[4])
  return {1}
end
return {0, current}
