-- $1 name. The live grant, if any, the microseconds it has left by the database clock, and its
-- owner label.
SELECT token,
       holder::text,
       floor(extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint,
       label
  FROM {table}
 WHERE name = $1
   AND holder IS NOT NULL
   AND expires_at > clock_timestamp()
