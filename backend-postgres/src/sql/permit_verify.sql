-- $1 name, $2 holder, $3 token. verify.sql for a permit, inside the caller's transaction (the
-- same answer: the row's token, which is the permit's own, and whether this live permit holds).
-- FOR SHARE keeps the permit row until that transaction ends: the next grant's DELETE of expired
-- permits waits for it, so the permit cannot be counted as gone before the caller commits.
SELECT token,
       coalesce(holder = $2::uuid AND expires_at > clock_timestamp(), false)
  FROM {permits}
 WHERE name = $1
   AND token = $3
   FOR SHARE
