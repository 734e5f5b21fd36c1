-- $1 the quoted, schema-qualified table name, $2 a column name.
SELECT EXISTS (
    SELECT 1
      FROM pg_attribute
     WHERE attrelid = to_regclass($1)
       AND attname = $2
       AND NOT attisdropped
)
