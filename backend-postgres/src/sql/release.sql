-- $1 name, $2 holder, $3 token, $4 notification channel.
-- Frees only this exact live grant, keeping the row (and its token), and notifies waiters in the
-- same statement: the NOTIFY is delivered exactly when the release commits.
WITH released AS (
    UPDATE {table}
       SET holder = NULL,
           expires_at = '-infinity'
     WHERE name = $1
       AND holder = $2::uuid
       AND token = $3
       AND expires_at > clock_timestamp()
    RETURNING name
)
SELECT count(*)
  FROM released
 CROSS JOIN LATERAL pg_notify($4, released.name)
