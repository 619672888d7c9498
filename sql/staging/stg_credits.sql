-- stg_credits: one /credits snapshot per partition (the run for day D snapshots after D ends).
-- Grain: snapshot_date. Key: snapshot_date.
-- Source: raw.credits. balance_usd = total_credits_usd - total_usage_usd (the API has no balance field).
with
source as (
    select * from raw.credits
),

typed as (
    select
        partition_date as snapshot_date,
        ---------- money (USD)
        total_credits as total_credits_usd,
        total_usage as total_usage_usd,
        total_credits - total_usage as balance_usd,
        ---------- lineage
        fetched_at,
        run_id
    from source
),

deduplicated as (
    select * from typed
    qualify row_number() over (partition by snapshot_date order by fetched_at desc) = 1
)

select * from deduplicated
