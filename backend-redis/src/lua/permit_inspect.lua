-- Reads the live permits of a semaphore by the server's clock (after token.lua and
-- permits.lua); writes nothing.
-- KEYS[1] permits (ZSET), KEYS[2] permit info (HASH)
-- Returns {} when no permit holds, else {limit, then per permit: "<holder>:<token>",
-- microseconds left, owner label (empty for none)}.
local now = server_micros()
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. digits_of(now), '+inf', 'WITHSCORES')
if #live == 0 then
  return {}
end
local members = {}
for i = 1, #live, 2 do
  members[#members + 1] = live[i]
end
local labels = {}
for i = 1, #members, 500 do
  local slice = redis.call('HMGET', KEYS[2], unpack(members, i, math.min(i + 499, #members)))
  for j = 1, #slice do
    labels[#labels + 1] = slice[j]
  end
end
local out = {redis.call('HGET', KEYS[2], 'limit')}
for i = 1, #members do
  out[#out + 1] = members[i]
  out[#out + 1] = tonumber(live[2 * i]) - now
  out[#out + 1] = labels[i] or ''
end
return out
