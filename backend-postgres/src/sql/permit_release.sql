-- $1 name, $2 holder, $3 token, $4 notification channel.
-- Deletes only this exact live permit and notifies waiters in the same statement. The payload is
-- the name after a U+0001 byte, which no lock name holds: the listener hands it to the permit
-- waiters only, and a lock waiter of the same name is not woken.
WITH released AS (
    DELETE FROM {permits}
     WHERE name = $1
       AND token = $3
       AND holder = $2::uuid
       AND expires_at > clock_timestamp()
    RETURNING name
)
SELECT count(*)
  FROM released
 CROSS JOIN LATERAL pg_notify($4, chr(1) || released.name)
