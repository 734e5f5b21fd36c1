-- $1 the key (text). Serializes concurrent migrations of one schema until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1, 0))
