-- $1 name, $2 holder (32 hex digits), $3 ttl in microseconds, $4 owner label ('' for none).
-- One statement: insert a fresh row, or take over a row whose grant ended, by the database clock.
-- The token is max(previous + 1, clock in microseconds), so a failover to a standby that missed
-- the last grants still hands out a larger token (as long as clocks move forward).
-- The durable clause raises synchronous_commit to on for this transaction if it was off: a grant is
-- acknowledged only once its WAL is flushed, so a crash cannot forget it.
INSERT INTO {table} AS lease (name, holder, token, expires_at, label)
SELECT $1,
       $2::uuid,
       floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
       clock_timestamp() + $3::bigint * interval '1 microsecond',
       nullif($4, '')
 WHERE {durable}
ON CONFLICT (name) DO UPDATE
   SET holder     = EXCLUDED.holder,
       token      = greatest(lease.token + 1, EXCLUDED.token),
       expires_at = EXCLUDED.expires_at,
       label      = EXCLUDED.label
 WHERE lease.expires_at <= clock_timestamp()
RETURNING token
