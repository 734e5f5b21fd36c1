-- A fenced write on one Redlock server: as fenced_set.lua, plus a stamp that orders the writes
-- of one token, so that a quorum read can tell which of two equal-token values is newer.
-- The resource is a hash: fields `value`, `fence_token`, `fence_stamp`.
-- KEYS[1] resource key
-- ARGV[1] token, ARGV[2] stamp (both decimal, at most 2^53 - 1), ARGV[3] value
-- Returns {1} when admitted, {0, high-water mark} when the token is stale.
--
-- An equal token with an older stamp is admitted but not stored: a later write of the same
-- token already replaced it here, as it would have if the two had arrived in stamp order.
local stored = redis.call('HMGET', KEYS[1], 'fence_token', 'fence_stamp')
local mark, stamp = stored[1], stored[2]
local token = tonumber(ARGV[1])
if mark then
  if tonumber(mark) > token then
    return {0, mark}
  end
  if tonumber(mark) == token and stamp and tonumber(stamp) > tonumber(ARGV[2]) then
    return {1}
  end
end
redis.call('HSET', KEYS[1], 'value', ARGV[3], 'fence_token', ARGV[1], 'fence_stamp', ARGV[2])
return {1}
