-- $1 names, $2 holders, $3 tokens (parallel arrays), $4 ttl in microseconds.
-- permit_renew.sql for a whole batch, in one statement and one durable commit. Returns the name,
-- token and holder of every permit it extended.
UPDATE {permits} AS permit
   SET expires_at = clock_timestamp() + $4::bigint * interval '1 microsecond'
  FROM unnest($1::text[], $2::text[]::uuid[], $3::bigint[]) AS batch(name, holder, token)
 WHERE permit.name = batch.name
   AND permit.token = batch.token
   AND permit.holder = batch.holder
   AND permit.expires_at > clock_timestamp()
   AND {durable}
RETURNING permit.name, permit.token, permit.holder::text
