-- Reads the live permits of a semaphore by the server's clock (after token.lua and
-- permits.lua); writes nothing.
-- KEYS[1] permits (ZSET), KEYS[2] the limit
-- Returns {} when no permit holds, else {limit, then per permit: "<holder>:<token>[:<label>]",
-- microseconds left}.
local now = server_micros()
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. digits_of(now), '+inf', 'WITHSCORES')
if #live == 0 then
  return {}
end
local out = {redis.call('GET', KEYS[2])}
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = tonumber(live[i + 1]) - now
end
return out
