-- The semaphore tables, beside the lease table (semaphores and locks are separate namespaces).
-- The table names are validated, double-quoted, schema-qualified identifiers derived from the
-- lease table's: `<table>_semaphores` and `<table>_permits`.
--
-- One row per semaphore name, never deleted, so a semaphore's token never resets. Every grant
-- locks this row first: grants of one name are serialized by it.
CREATE TABLE IF NOT EXISTS {semaphores} (
    -- The semaphore name. COLLATE "C": names compare byte for byte, whatever the locale.
    name         text COLLATE "C" PRIMARY KEY,
    -- The last token granted for this name (0 before the first grant). Kept below 2^53 like the
    -- lease table's; going past it is an error, never a wrap.
    last_token   bigint NOT NULL
                 CONSTRAINT fencelock_semaphore_token_range
                 CHECK (last_token BETWEEN 0 AND 9007199254740991),
    -- The limit the live permits were granted under (meaningful while any permit is live).
    permit_limit integer CONSTRAINT fencelock_permit_limit_range CHECK (permit_limit >= 1)
);
COMMENT ON TABLE {semaphores} IS
    'fencelock semaphores: one row per semaphore name; rows are never deleted so fencing tokens only rise';
-- One row per granted permit, deleted when released, or by the next grant of its name once it
-- has expired by the database clock.
CREATE TABLE IF NOT EXISTS {permits} (
    name       text COLLATE "C" NOT NULL,
    -- The permit's token: above every earlier grant of the name, so (name, token) is unique.
    token      bigint NOT NULL
               CONSTRAINT fencelock_permit_token_range CHECK (token BETWEEN 1 AND 9007199254740991),
    -- The permit's 128-bit holder id.
    holder     uuid NOT NULL,
    -- When the permit ends, by the database's clock.
    expires_at timestamptz NOT NULL,
    -- The permit's owner label; NULL when it has none.
    label      text,
    PRIMARY KEY (name, token)
);
COMMENT ON TABLE {permits} IS
    'fencelock permits: the live (and not yet swept expired) permits of each semaphore'
