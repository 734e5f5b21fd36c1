-- Adds the owner label column to a lease table created before labels existed (run only when the
-- column is missing, so a role without ALTER privileges can use a table an administrator made).
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS label text
