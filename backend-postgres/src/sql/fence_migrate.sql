-- The table of PgFence: one row per fenced key, holding the value of the last admitted write
-- and the key's high-water mark. The table name is a validated, double-quoted,
-- schema-qualified identifier.
CREATE TABLE IF NOT EXISTS {table} (
    -- The fenced key. COLLATE "C": keys compare byte for byte, whatever the database's locale.
    key         text COLLATE "C" PRIMARY KEY,
    -- The highest token admitted for the key: the token of the write that left `value`.
    fence_token bigint NOT NULL CONSTRAINT fencelock_fence_token_range CHECK (fence_token >= 0),
    -- The value of the last admitted write, as given.
    value       bytea NOT NULL
);
COMMENT ON TABLE {table} IS
    'fencelock fenced values: a write lands iff its token is at least the row''s fence_token';
