-- stg_credits: one /credits snapshot per partition (the run for day D snapshots after D ends).
-- Grain: snapshot_date. Key: snapshot_date.
-- Source: raw.credits, staging.stg_key_snapshots (the same partition's keys: their usage_daily).
-- balance_usd = total_credits_usd - total_usage_usd (the API has no balance field), both as fetched.
-- Timing: /credits describes the moment it is fetched ("now", the current UTC day's spend included).
--   Fetched during the day after snapshot_date ('on_time'), the usage at the end of snapshot_date is
--   total_usage − the keys' usage_daily (the current day's spend so far); fetched after that day ended
--   ('late': a backfill) or before snapshot_date ended ('early') it does not describe the end of its day:
--   end_of_day_usage_usd is NULL and nothing may be reconciled across it.
-- Precision: /credits and the /keys pages are fetched moments apart, so an on-time end_of_day_usage_usd is off
--   by what was spent between those fetches (their fetched_at in raw.credits and raw.keys bound it).
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
),

timed as (
    select
        *,
        marts.snapshot_timing(snapshot_date, fetched_at) as snapshot_timing
    from deduplicated
),

usage_today as (
    select snapshot_date, sum(coalesce(usage_daily_usd, 0)) as usage_today_usd
    from staging.stg_key_snapshots
    group by snapshot_date
),

final as (
    select
        timed.*,
        timed.snapshot_timing = 'late' as is_late_snapshot,
        coalesce(usage_today.usage_today_usd, 0) as usage_today_usd,
        case when timed.snapshot_timing = 'on_time'
            then timed.total_usage_usd - coalesce(usage_today.usage_today_usd, 0)
        end as end_of_day_usage_usd
    from timed
    left join usage_today using (snapshot_date)
)

select * from final
