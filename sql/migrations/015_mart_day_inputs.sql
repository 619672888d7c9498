-- What each day of an input-keyed mart was last built from (openrouter_spend.warehouse.marts): one row per
-- mart and day. A build leaves a day's rows as they are when the digest of everything they are computed from
-- (the mart's SELECT, the macros and migrations, and its inputs as sql/marts/inputs/<mart>.sql reads them)
-- equals the one recorded here; a full rebuild or a reshaped table forgets the mart's rows.
create table if not exists meta.mart_day_inputs (
    mart_name varchar not null,
    usage_date date not null,
    input_key varchar not null,
    built_at timestamptz not null,
    primary key (mart_name, usage_date)
);
