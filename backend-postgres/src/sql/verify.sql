-- $1 name, $2 holder, $3 token. Run inside the caller's transaction.
-- FOR SHARE keeps the row locked until that transaction ends, so nobody can take the lease
-- over between this check and the caller's commit: "lease still held" and the caller's writes
-- commit together or not at all.
SELECT token,
       coalesce(holder = $2::uuid AND token = $3 AND expires_at > clock_timestamp(), false)
  FROM {table}
 WHERE name = $1
   FOR SHARE
