-- Extends a grant if this exact grant (holder id and token) still holds.
-- KEYS[1] lock key
-- ARGV[1] "<holder>:<token>" of the grant, ARGV[2] TTL in milliseconds
-- Returns {1} when extended, else {0, current value or false}.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
return {0, current}
