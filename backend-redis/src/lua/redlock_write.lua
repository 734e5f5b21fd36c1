-- Redlock, phase 2 on one server: takes the lock with a proposed token, iff the lock is free
-- and the proposal is above every token this server has seen for the name.
-- KEYS[1] lock key, KEYS[2] token counter key (same hash slot)
-- ARGV[1] holder id (hex), ARGV[2] proposed token (decimal, at most 2^53 - 1),
-- ARGV[3] TTL in milliseconds, ARGV[4] ":<owner label>" or empty
-- Returns {1} when set, {0, current grant} when held, {2, counter} when the proposal is stale.
--
-- The counter is raised in the same step as the lock is set, and a proposal at or below it is
-- refused: on every server, the grants it accepted carry strictly increasing tokens. Any two
-- grants share a server (majorities intersect), so grant tokens are ordered the way the grants
-- happened (see the crate's Redlock docs).
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current}
end
local counter = redis.call('GET', KEYS[2])
if not counter then
  -- Lost (restart without persistence) since phase 1 read it: floor at the clock again.
  local now = redis.call('TIME')
  counter = string.format('%.0f', tonumber(now[1]) * 1000000 + tonumber(now[2]))
  redis.call('SET', KEYS[2], counter)
end
local seen = tonumber(counter)
local proposed = tonumber(ARGV[2])
if seen == nil or proposed == nil then
  return redis.error_reply('fencelock: token counter ' .. KEYS[2] .. ' or proposal is not a number')
end
if proposed <= seen then
  return {2, counter}
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2] .. (ARGV[4] or ''), 'PX', ARGV[3])
return {1}
