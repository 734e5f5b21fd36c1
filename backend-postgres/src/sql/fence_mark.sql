-- $1 key. The mark that rejected a write: read after it, so it is at least that high.
SELECT fence_token FROM {table} WHERE key = $1
