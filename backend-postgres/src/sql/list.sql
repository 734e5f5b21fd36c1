-- $1 name prefix as a LIKE pattern ('%', '_' and '\' escaped with '\'), $2 list names after this
-- one ('' for the first page), $3 the most rows to return.
-- The live grants under the prefix in name order (COLLATE "C": byte order, as the client sorts),
-- with the microseconds each has left by the database clock and its owner label.
SELECT name,
       token,
       holder::text,
       floor(extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint,
       label
  FROM {table}
 WHERE name LIKE $1 ESCAPE '\'
   AND name > $2
   AND holder IS NOT NULL
   AND expires_at > clock_timestamp()
 ORDER BY name
 LIMIT $3
