-- $1 the quoted, schema-qualified table name.
SELECT to_regclass($1) IS NOT NULL
