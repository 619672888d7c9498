-- What each mart table was last shaped from (openrouter_spend.warehouse.marts): one row per mart. A build
-- reads a mart's SELECT for its columns (DESCRIBE) only when the key differs, that is when the SELECT, what
-- it reads (tables, views, table macros), the table itself or DuckDB changed since the key was written.
create table if not exists meta.mart_shapes (
    mart_name varchar primary key,
    shape_key varchar not null,
    shaped_at timestamptz not null
);
