-- $1 name, $2 holder (32 hex digits), $3 ttl in microseconds, $4 owner label ('' for none),
-- $5 limit. Runs after permit_lock.sql in the same transaction, with the semaphore row locked.
--
-- Deletes the permits of the name that expired by the database clock, then grants one if no
-- permit is live, or if the live ones were granted under the same limit and fewer than it hold.
-- The live permits are the rows this statement sees minus those it deleted: a permit renewed
-- by a concurrent statement just as it expired is not deleted (the DELETE waits for the
-- renewal and re-checks the new row), so it still counts as live.
-- The token is max(last + 1, clock in microseconds), as for locks, kept in the semaphore row.
-- Answers the token granted (NULL if none), the live permits, the limit they hold under, and
-- the microseconds until the first live permit expires (for a refused waiter: how long it may
-- sleep without reading the permits; NULL when none is live).
WITH expired AS (
    DELETE FROM {permits}
     WHERE name = $1
       AND expires_at <= clock_timestamp()
    RETURNING token
), seen AS (
    -- One scan of the name's rows: how many, and when the first live one expires.
    SELECT count(*) AS total,
           min(expires_at) FILTER (WHERE expires_at > clock_timestamp()) AS first_expiry
      FROM {permits}
     WHERE name = $1
), live AS (
    SELECT seen.total - (SELECT count(*) FROM expired) AS held
      FROM seen
), granted AS (
    UPDATE {semaphores} AS semaphore
       SET last_token   = greatest(semaphore.last_token + 1,
                                   floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint),
           permit_limit = $5::integer
      FROM live
     WHERE semaphore.name = $1
       AND (live.held = 0
            OR (semaphore.permit_limit = $5::integer AND live.held < $5::integer))
    RETURNING semaphore.last_token
), inserted AS (
    INSERT INTO {permits} (name, token, holder, expires_at, label)
    SELECT $1,
           granted.last_token,
           $2::uuid,
           clock_timestamp() + $3::bigint * interval '1 microsecond',
           nullif($4, '')
      FROM granted
    RETURNING token
)
SELECT (SELECT token FROM inserted),
       (SELECT held FROM live),
       (SELECT permit_limit FROM {semaphores} WHERE name = $1),
       (SELECT floor(extract(epoch FROM first_expiry - clock_timestamp()) * 1000000)::bigint
          FROM seen)
