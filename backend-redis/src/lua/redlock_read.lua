-- Redlock, round 1 on one server: reads the lock and the name's token floor.
-- KEYS[1] lock key, KEYS[2] token counter key (same hash slot)
-- Returns {current grant or false, max(counter, server TIME in microseconds) as digits}.
--
-- The acquirer proposes one more than the highest floor of a majority, so tokens follow the
-- servers' clocks (like the single-server store) and a server whose counter ran ahead is caught
-- up with by the next proposal. A counter that does not exist yet (a new name, or a server
-- that restarted without persistence) is created at the server's clock, so a server that lost
-- its data never accepts a token below the ones minted before the loss, as long as its clock
-- moves forward (see the crate's Redlock docs).
if redis.replicate_commands then
  -- Redis < 5 needs this to write after reading TIME; later versions always replicate effects.
  pcall(redis.replicate_commands)
end
local current = redis.call('GET', KEYS[1])
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local counter = redis.call('GET', KEYS[2])
local seen
if not counter then
  seen = clock
  redis.call('SET', KEYS[2], string.format('%.0f', clock))
else
  seen = tonumber(counter)
  if seen == nil then
    return redis.error_reply('fencelock: token counter ' .. KEYS[2] .. ' does not hold a number')
  end
end
return {current, string.format('%.0f', math.max(seen, clock))}
