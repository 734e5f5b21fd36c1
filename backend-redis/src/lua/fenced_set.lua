-- A fenced write: sets the value iff the token is at least the highest token accepted so far,
-- raising that mark in the same step. The resource is a hash: field `value`, field `fence_token`.
-- KEYS[1] resource key
-- ARGV[1] token (decimal, at most 2^53 - 1), ARGV[2] value
-- Returns {1} when written, {0, high-water mark} when the token is stale.
local mark = redis.call('HGET', KEYS[1], 'fence_token')
if mark and tonumber(mark) > tonumber(ARGV[1]) then
  return {0, mark}
end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'fence_token', ARGV[1])
return {1}
