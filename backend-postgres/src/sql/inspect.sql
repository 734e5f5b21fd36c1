-- $1 name. The live grant, if any, and the microseconds it has left by the database clock.
SELECT token,
       holder::text,
       floor(extract(epoch FROM expires_at - clock_timestamp()) * 1000000)::bigint
  FROM {table}
 WHERE name = $1
   AND holder IS NOT NULL
   AND expires_at > clock_timestamp()
