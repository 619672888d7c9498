-- raw.keys.is_latest_fetch: whether the row is its key's newest fetch in its partition, the one /keys
-- snapshot stg_key_snapshots keeps per snapshot_date × api_key_hash. The load writes it, since a load replaces
-- a partition's rows whole; picking it on every read grouped every key fetch ever loaded. The rule is the one
-- the pick used: the latest fetched_at, and of equal ones the row loaded first (the lowest row id). Rows
-- loaded before this column existed get it here by that rule.
alter table raw.keys add column if not exists is_latest_fetch boolean;

update raw.keys
set is_latest_fetch = rowid in (
    select arg_max(rowid, (fetched_at, -rowid)) as fetch_row
    from raw.keys
    group by partition_date, key_hash
)
where is_latest_fetch is null;
