-- Breaks whatever grant holds the lock, and announces it (after announce.lua). The token
-- counter stays.
-- KEYS[1] lock key
-- ARGV[1] the lock's release channel, ARGV[2] lock name, ARGV[3] (optional) "sharded": SPUBLISH
-- Returns {"<holder>:<token>"} of the broken grant, else {}.
local current = redis.call('GET', KEYS[1])
if not current then
  return {}
end
redis.call('DEL', KEYS[1])
announce(ARGV[1], ARGV[2], ARGV[3])
return {current}
