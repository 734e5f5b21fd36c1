-- $1 key. The value of the last admitted write and the key's mark.
SELECT value, fence_token FROM {table} WHERE key = $1
