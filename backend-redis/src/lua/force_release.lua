-- Breaks whatever grant holds the lock, and announces it. The token counter stays.
-- KEYS[1] lock key
-- ARGV[1] the lock's release channel, ARGV[2] lock name
-- Returns {"<holder>:<token>"} of the broken grant, else {}.
local current = redis.call('GET', KEYS[1])
if not current then
  return {}
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {current}
