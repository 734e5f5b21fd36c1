-- $1 names, $2 holders, $3 tokens (parallel arrays), $4 ttl in microseconds.
-- renew.sql for a whole batch: extends each exact grant that is still live by the database
-- clock, in one statement and one durable commit. Returns the name, token and holder of every
-- grant it extended (the holder too: a forged lease beside the real one in a batch shares its
-- name and token); a grant listed twice is extended once and returned once.
UPDATE {table} AS lease
   SET expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
  FROM unnest($1::text[], $2::text[]::uuid[], $3::bigint[]) AS batch(name, holder, token)
 WHERE lease.name = batch.name
   AND lease.holder = batch.holder
   AND lease.token = batch.token
   AND lease.expires_at > clock_timestamp()
   AND {durable}
RETURNING lease.name, lease.token, lease.holder::text
