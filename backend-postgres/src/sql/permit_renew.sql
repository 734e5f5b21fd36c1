-- $1 name, $2 holder, $3 token, $4 ttl in microseconds.
-- Extends only this exact permit, and only while it is still live by the database clock.
-- Durable like a grant.
UPDATE {permits}
   SET expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
 WHERE name = $1
   AND token = $3
   AND holder = $2::uuid
   AND expires_at > clock_timestamp()
   AND {durable}
RETURNING token
