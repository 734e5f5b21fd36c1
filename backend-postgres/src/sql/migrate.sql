-- The lease table: one row per lock name, never deleted, so a name's token never resets.
-- The table name is a validated, double-quoted, schema-qualified identifier.
CREATE TABLE IF NOT EXISTS {table} (
    -- The lock name. COLLATE "C": names compare byte for byte, whatever the database's locale.
    name       text COLLATE "C" PRIMARY KEY,
    -- The current grant's 128-bit holder id; NULL once released or broken.
    holder     uuid,
    -- The last token granted for this name. Kept below 2^53 so it survives any JSON or Lua
    -- number on its way downstream; going past it is an error, never a wrap.
    token      bigint NOT NULL
               CONSTRAINT fencelock_token_range CHECK (token BETWEEN 1 AND 9007199254740991),
    -- When the grant ends, by the database's clock ('-infinity' once released).
    expires_at timestamptz NOT NULL,
    -- The current grant's owner label (who holds it, for operators); NULL when it has none.
    label      text
);
COMMENT ON TABLE {table} IS
    'fencelock leases: one row per lock name; rows are never deleted so fencing tokens only rise';
