-- $1 name, $2 notification channel.
-- Breaks the live grant of a name, whoever holds it; returns the broken token and notifies.
WITH broken AS (
    UPDATE {table}
       SET holder = NULL,
           expires_at = '-infinity'
     WHERE name = $1
       AND holder IS NOT NULL
       AND expires_at > clock_timestamp()
    RETURNING name, token
)
SELECT broken.token
  FROM broken
 CROSS JOIN LATERAL pg_notify($2, broken.name)
