-- stg_models: the current catalogue entry of every model ever seen (newest snapshot per model).
-- Grain: model_id. Key: model_id.
-- Source: staging.stg_model_snapshots. Deprecated models keep their last known prices.
with
snapshots as (
    select * from staging.stg_model_snapshots
),

latest as (
    select
        *,
        max(snapshot_date) over () as newest_snapshot_date
    from snapshots
    qualify row_number() over (partition by model_id order by snapshot_date desc, fetched_at desc) = 1
),

final as (
    select
        * exclude (newest_snapshot_date),
        snapshot_date = newest_snapshot_date as is_listed
    from latest
)

select * from final
