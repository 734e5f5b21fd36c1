-- Grants a free lock and mints its fencing token, atomically (after token.lua).
-- KEYS[1] lock key, KEYS[2] token counter key (same hash slot)
-- ARGV[1] holder id (hex), ARGV[2] TTL in milliseconds, ARGV[3] ":<owner label>" or empty
-- Returns {1, "<holder>:<token>[:<label>]"} when granted, {0, pttl} when held.
--
-- The token is max(previous + 1, server TIME in microseconds) (mint_token in token.lua).
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  return {0, pttl}
end
local digits, failed = mint_token(KEYS[2], server_micros())
if not digits then
  return failed
end
local value = ARGV[1] .. ':' .. digits .. (ARGV[3] or '')
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
