-- key_usage_vs_activity: per key listed in both the day's and the previous on-time /keys snapshot, its end-of-day
-- usage delta (credits and BYOK) against its activity since the previous snapshot; no rows when $previous is NULL.
-- Grain: api_key_hash. Key: api_key_hash.
-- Upstream: staging.stg_key_snapshots, staging.stg_activity.
-- Parameters: $day, $previous (the previous snapshot's date), $abs_tol, $rel_tol.
-- Each snapshot read with its own equality on a constant: the filter then reaches both raw.keys scans of
-- stg_key_snapshots (the read and the newest-fetch pick), so only the two snapshots compared are parsed.
with
current as (
    select
        snapshot_date,
        api_key_hash,
        api_key_name,
        end_of_day_usage_usd as usage_usd,
        end_of_day_byok_usage_usd as byok_usage_usd
    from staging.stg_key_snapshots
    where snapshot_date = $day
),

previous as (
    select
        snapshot_date,
        api_key_hash,
        end_of_day_usage_usd as usage_usd,
        end_of_day_byok_usage_usd as byok_usage_usd
    from staging.stg_key_snapshots
    where snapshot_date = $previous
),

activity as (
    select
        api_key_hash,
        marts.exact_sum(usage_usd) as usage_usd,
        marts.exact_sum(byok_usage_usd) as byok_usd
    from staging.stg_activity
    where usage_date > $previous::date and usage_date <= $day::date
    group by api_key_hash
),

compared as (
    select
        current.api_key_hash,
        current.api_key_name,
        previous.snapshot_date as previous_snapshot_date,
        coalesce(current.usage_usd, 0) - coalesce(previous.usage_usd, 0) as usage_delta_usd,
        coalesce(activity.usage_usd, 0) as activity_usage_usd,
        coalesce(current.byok_usage_usd, 0) - coalesce(previous.byok_usage_usd, 0) as byok_delta_usd,
        coalesce(activity.byok_usd, 0) as activity_byok_usd
    from current
    inner join previous using (api_key_hash)
    left join activity using (api_key_hash)
)

select
    *,
    usage_delta_usd - activity_usage_usd as difference_usd,
    abs(usage_delta_usd - activity_usage_usd) as abs_difference_usd,
    $abs_tol + $rel_tol * abs(activity_usage_usd) as tolerance_usd,
    byok_delta_usd - activity_byok_usd as byok_difference_usd,
    abs(byok_delta_usd - activity_byok_usd) as abs_byok_difference_usd,
    $abs_tol + $rel_tol * abs(activity_byok_usd) as byok_tolerance_usd
from compared
order by api_key_hash
