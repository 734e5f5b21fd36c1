-- $1 name. The first statement of a grant's transaction: creates the semaphore's row if missing
-- and locks it until the transaction ends, so grants of one name run one after another, and the
-- grant statement that follows (a new snapshot, under READ COMMITTED) sees every permit the
-- grants before it committed.
-- The durable clause raises synchronous_commit to on for this transaction if it was off: a
-- permit is acknowledged only once its WAL is flushed, so a crash cannot forget it.
INSERT INTO {semaphores} AS semaphore (name, last_token)
SELECT $1, 0
 WHERE {durable}
ON CONFLICT (name) DO UPDATE
   SET last_token = semaphore.last_token
