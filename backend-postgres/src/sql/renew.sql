-- $1 name, $2 holder, $3 token, $4 ttl in microseconds.
-- Extends only this exact grant, and only while it is still live by the database clock.
-- Durable like a grant: a forgotten renewal would let the holder trust a lease the server dropped.
UPDATE {table}
   SET expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
 WHERE name = $1
   AND holder = $2::uuid
   AND token = $3
   AND expires_at > clock_timestamp()
   AND {durable}
RETURNING token
