-- stg_keys: the current state of every key ever seen (newest snapshot per key).
-- Grain: api_key_hash. Key: api_key_hash.
-- Source: staging.stg_key_snapshots. Keys that vanished from /keys keep their last known state.
with
snapshots as (
    select * from staging.stg_key_snapshots
),

latest as (
    select
        *,
        min(snapshot_date) over (partition by api_key_hash) as first_seen_date,
        max(snapshot_date) over (partition by api_key_hash) as last_seen_date
    from snapshots
    qualify row_number() over (
        partition by api_key_hash order by snapshot_date desc, fetched_at desc
    ) = 1
),

final as (
    select
        * exclude (snapshot_date),
        expires_at is not null and expires_at <= fetched_at as is_expired
    from latest
)

select * from final
