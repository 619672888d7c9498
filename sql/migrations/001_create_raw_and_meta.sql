-- Raw layer: one row per item of every landed API response, loaded per partition (UTC day).
-- Each raw table keeps the untouched item as JSON (`payload`, unknown fields included) next to the
-- few columns needed for keys and partition swaps; staging views do the typing.
-- Loads replace a whole partition inside one transaction (delete + insert), so reruns never duplicate.
create schema if not exists raw;
create schema if not exists meta;

create table if not exists raw.credits (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    total_credits double,
    total_usage double,
    payload json not null
);

create table if not exists raw.workspaces (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    workspace_id varchar not null,
    payload json not null
);

create table if not exists raw.keys (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    requested_workspace_id varchar,
    page_offset integer not null,
    key_hash varchar not null,
    payload json not null
);

create table if not exists raw.models (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    model_id varchar not null,
    payload json not null
);

create table if not exists raw.providers (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    provider_name varchar not null,
    payload json not null
);

-- scope = 'account' for /activity?date=D, 'key' for /activity?date=D&api_key_hash=H.
create table if not exists raw.activity (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    scope varchar not null check (scope in ('account', 'key')),
    api_key_hash varchar,
    payload json not null
);

-- Lineage: which landed files fed the current contents of each partition.
create table if not exists meta.landed_files (
    partition_date date not null,
    run_id varchar not null,
    batch varchar not null,
    landing_file varchar not null,
    endpoint varchar not null,
    request_params json,
    fetched_at timestamptz not null,
    sha256 varchar not null,
    item_count integer not null,
    loaded_at timestamptz not null default current_timestamp
);

-- One row per completed load of a partition (history, never replaced).
create table if not exists meta.load_runs (
    partition_date date not null,
    run_id varchar not null,
    loaded_at timestamptz not null default current_timestamp,
    status varchar not null check (status in ('loaded', 'gap')),
    row_counts json not null,
    notes json
);

-- Days whose data can no longer be fetched (outside the API's 30-day window when first attempted).
create table if not exists meta.extraction_gaps (
    partition_date date not null,
    endpoint varchar not null,
    reason varchar not null,
    run_id varchar not null,
    recorded_at timestamptz not null default current_timestamp,
    primary key (partition_date, endpoint)
);
