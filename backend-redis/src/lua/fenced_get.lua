-- A fenced read: the value, its high-water token and (written by Redlock) its stamp.
-- KEYS[1] resource key
-- Returns {value, fence_token, fence_stamp}; a field that is missing is nil (false in Lua).
return redis.call('HMGET', KEYS[1], 'value', 'fence_token', 'fence_stamp')
