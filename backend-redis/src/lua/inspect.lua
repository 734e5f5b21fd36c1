-- Reads the current grant and its remaining TTL by the server's clock.
-- KEYS[1] lock key
-- Returns {"<holder>:<token>[:<label>]", pttl} when held, else {}.
local current = redis.call('GET', KEYS[1])
if not current then
  return {}
end
return {current, redis.call('PTTL', KEYS[1])}
