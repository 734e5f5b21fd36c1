-- $1 key, $2 token, $3 value. One statement: insert the key, or update it iff its mark is not
-- above the token. ON CONFLICT locks the row and judges the WHERE on its newest version, so
-- concurrent writers serialize and no lower token lands after a higher one. A row comes back
-- iff the write was admitted.
INSERT INTO {table} AS fence (key, fence_token, value)
VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE
   SET fence_token = EXCLUDED.fence_token,
       value = EXCLUDED.value
 WHERE fence.fence_token <= EXCLUDED.fence_token
RETURNING fence_token
