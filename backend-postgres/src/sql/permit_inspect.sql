-- $1 name. The live permits in token order, each with the microseconds it has left by the
-- database clock and its owner label, and the limit they were granted under.
SELECT permit.token,
       permit.holder::text,
       floor(extract(epoch FROM permit.expires_at - clock_timestamp()) * 1000000)::bigint,
       permit.label,
       semaphore.permit_limit
  FROM {permits} AS permit
  LEFT JOIN {semaphores} AS semaphore ON semaphore.name = permit.name
 WHERE permit.name = $1
   AND permit.expires_at > clock_timestamp()
 ORDER BY permit.token
