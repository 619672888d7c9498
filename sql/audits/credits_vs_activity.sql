-- credits_vs_activity: the change of end-of-day /credits total_usage since the previous on-time snapshot against
-- the account activity of the days between; no row when either snapshot is missing ($previous NULL).
-- Grain: one row for the day's snapshot (as_of_date). Key: as_of_date.
-- Upstream: staging.stg_credits, staging.stg_account_activity, meta.load_runs.
-- Parameters: $day, $previous (the previous snapshot's date), $abs_tol, $rel_tol.
-- Each snapshot read with its own equality on a constant, so the filter reaches the raw.keys scans under
-- stg_credits (its keys' usage_daily) and only the two snapshots compared are parsed.
with
current_snapshot as (
    select
        snapshot_date,
        end_of_day_usage_usd as total_usage_usd,
        date_diff('second', (snapshot_date + interval 1 day)::timestamptz, fetched_at) / 3600.0 as lag_hours
    from staging.stg_credits
    where snapshot_date = $day
),

previous_snapshot as (
    select
        snapshot_date,
        end_of_day_usage_usd as total_usage_usd,
        date_diff('second', (snapshot_date + interval 1 day)::timestamptz, fetched_at) / 3600.0 as lag_hours
    from staging.stg_credits
    where snapshot_date = $previous
),

between_days as (
    select
        unnest(generate_series(
            (select snapshot_date from previous_snapshot) + interval 1 day, $day::timestamp, interval 1 day
        ))::date as usage_date
),

loaded_days as (
    select distinct partition_date as usage_date
    from meta.load_runs
    where status = 'loaded'
),

activity as (
    select marts.exact_sum(usage_usd) as usage_usd
    from staging.stg_account_activity
    -- The same days as between_days, as constants so the filter reaches raw.activity's scan.
    where usage_date > $previous::date and usage_date <= $day::date
),

missing as (
    select list(usage_date order by usage_date) as missing_days
    from between_days
    anti join loaded_days using (usage_date)
),

compared as (
    select
        current_snapshot.snapshot_date as as_of_date,
        previous_snapshot.snapshot_date as previous_snapshot_date,
        current_snapshot.total_usage_usd - previous_snapshot.total_usage_usd as usage_delta_usd,
        coalesce(activity.usage_usd, 0) as activity_usage_usd,
        coalesce(missing.missing_days, []::date[]) as missing_days,
        current_snapshot.lag_hours as current_lag_hours,
        previous_snapshot.lag_hours as previous_lag_hours
    from current_snapshot, previous_snapshot, activity, missing
)

select
    as_of_date,
    previous_snapshot_date,
    usage_delta_usd,
    activity_usage_usd,
    usage_delta_usd - activity_usage_usd as difference_usd,
    abs(usage_delta_usd - activity_usage_usd) as abs_difference_usd,
    $abs_tol + $rel_tol * abs(activity_usage_usd) as tolerance_usd,
    len(missing_days) as missing_day_count,
    array_to_string(list_transform(missing_days, lambda d: strftime(d, '%Y-%m-%d')), ', ') as missing_days,
    current_lag_hours,
    previous_lag_hours
from compared
