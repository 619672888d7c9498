-- history_completeness: one row per day from the first loaded (or gap) day to $day, loaded, permanent_gap or
-- missing, and whether the day is still inside the API's window.
-- Grain: usage_date. Key: usage_date.
-- Upstream: meta.load_runs, meta.extraction_gaps.
-- Parameters: $day, $window (the API window in days).
with
bounds as (
    select least(min(partition_date), $day::date) as first_day
    from (
        select partition_date from meta.load_runs
        union all
        select partition_date from meta.extraction_gaps
    ) as partitions
),

days as (
    select
        unnest(generate_series(
            coalesce((select first_day from bounds), $day::date)::timestamp, $day::timestamp, interval 1 day
        ))::date as usage_date
),

loaded as (
    select distinct partition_date as usage_date
    from meta.load_runs
    where status = 'loaded'
),

gaps as (
    select distinct partition_date as usage_date
    from meta.extraction_gaps
)

select
    days.usage_date,
    case
        when loaded.usage_date is not null then 'loaded'
        when gaps.usage_date is not null then 'permanent_gap'
        else 'missing'
    end as status,
    days.usage_date >= $day::date - ($window - 1) as is_in_window
from days
left join loaded using (usage_date)
left join gaps using (usage_date)
order by days.usage_date
