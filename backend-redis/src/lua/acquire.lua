-- Grants a free lock and mints its fencing token, atomically.
-- KEYS[1] lock key, KEYS[2] token counter key (same hash slot)
-- ARGV[1] holder id (hex), ARGV[2] TTL in milliseconds, ARGV[3] ":<owner label>" or empty
-- Returns {1, "<holder>:<token>[:<label>]"} when granted, {0, pttl} when held.
--
-- The token is max(previous + 1, server TIME in microseconds): the counter survives release,
-- and the clock floor keeps tokens rising even if the counter was lost (restart without
-- persistence, failover to a replica that missed writes), as long as the server clock moves
-- forward. Lua numbers are doubles, so tokens stay at or below 2^53 - 1.
if redis.replicate_commands then
  -- Redis < 5 needs this to write after reading TIME; later versions always replicate effects.
  pcall(redis.replicate_commands)
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  return {0, pttl}
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
if previous == nil then
  return redis.error_reply('fencelock: token counter ' .. KEYS[2] .. ' does not hold a number')
end
local token = math.max(previous + 1, floor)
if token > 9007199254740991 then
  return redis.error_reply('fencelock: token counter ' .. KEYS[2] .. ' is exhausted (2^53 - 1)')
end
local digits = string.format('%.0f', token)
local value = ARGV[1] .. ':' .. digits .. (ARGV[3] or '')
redis.call('SET', KEYS[2], digits)
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value}
