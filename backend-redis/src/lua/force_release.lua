-- Breaks whatever grant holds the lock, and announces it. The token counter stays.
-- KEYS[1] lock key
-- ARGV[1] the lock's release channel, ARGV[2] lock name, ARGV[3] (optional) "sharded": SPUBLISH
-- Returns {"<holder>:<token>"} of the broken grant, else {}.
local current = redis.call('GET', KEYS[1])
if not current then
  return {}
end
redis.call('DEL', KEYS[1])
if ARGV[3] == 'sharded' then
  -- pcall: a Redis before 7.0 has no SPUBLISH; its waiters poll.
  redis.pcall('SPUBLISH', ARGV[1], ARGV[2])
else
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return {current}
