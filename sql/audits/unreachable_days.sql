-- unreachable_days: days never loaded and not yet recorded as gaps, from the first loaded (or gap) day up to
-- $before, the last day that has left the API's window; the gate records them as permanent gaps.
-- Grain: partition_date. Key: partition_date.
-- Upstream: meta.load_runs, meta.extraction_gaps.
-- Parameters: $before.
with
bounds as (
    select min(partition_date) as first_day
    from (
        select partition_date from meta.load_runs
        union all
        select partition_date from meta.extraction_gaps
    ) as partitions
),

days as (
    select unnest(generate_series((select first_day from bounds), $before::timestamp, interval 1 day))::date
        as partition_date
)

select partition_date
from days
where
    partition_date not in (select partition_date from meta.load_runs where status = 'loaded')
    and partition_date not in (select partition_date from meta.extraction_gaps)
order by partition_date
