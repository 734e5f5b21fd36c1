-- Redlock, phase 1 on one server: reads the lock and the name's token counter.
-- KEYS[1] lock key, KEYS[2] token counter key (same hash slot)
-- Returns {current grant or false, counter as decimal digits}.
--
-- A counter that does not exist yet (a new name, or a server that restarted without
-- persistence) is created at the server's TIME in microseconds, so a server that lost its data
-- never offers or accepts a token below the ones minted before the loss, as long as its clock
-- moves forward (see the crate's Redlock docs).
if redis.replicate_commands then
  -- Redis < 5 needs this to write after reading TIME; later versions always replicate effects.
  pcall(redis.replicate_commands)
end
local current = redis.call('GET', KEYS[1])
local counter = redis.call('GET', KEYS[2])
if not counter then
  local now = redis.call('TIME')
  counter = string.format('%.0f', tonumber(now[1]) * 1000000 + tonumber(now[2]))
  redis.call('SET', KEYS[2], counter)
elseif tonumber(counter) == nil then
  return redis.error_reply('fencelock: token counter ' .. KEYS[2] .. ' does not hold a number')
end
return {current, counter}
