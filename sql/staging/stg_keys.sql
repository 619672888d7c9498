-- stg_keys: the current state of every key ever seen (newest snapshot per key).
-- Grain: api_key_hash. Key: api_key_hash.
-- Source: staging.stg_key_snapshots, raw.keys. Keys that vanished from /keys keep their last known state.
-- Cost: the days each key was seen come from raw.keys' narrow columns (a snapshot exists for every partition
--   and key raw.keys holds, so these are stg_key_snapshots' first and last days without picking each day's
--   newest fetch first); then only the snapshot of each key's last day is parsed (unique per
--   snapshot_date × api_key_hash), not every day's.
with
seen as (
    select
        key_hash as api_key_hash,
        min(partition_date) as first_seen_date,
        max(partition_date) as last_seen_date
    from raw.keys
    group by key_hash
),

latest as (
    select
        snapshots.*,
        seen.first_seen_date,
        seen.last_seen_date
    from staging.stg_key_snapshots as snapshots
    inner join seen
        on snapshots.api_key_hash = seen.api_key_hash
        and snapshots.snapshot_date = seen.last_seen_date
),

final as (
    select
        * exclude (snapshot_date),
        expires_at is not null and expires_at <= fetched_at as is_expired
    from latest
)

select * from final
