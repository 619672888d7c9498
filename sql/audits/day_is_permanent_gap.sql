-- day_is_permanent_gap: whether the day was never loaded and is recorded in meta.extraction_gaps (it can never
-- be fetched again).
-- Grain: one row. Key: none.
-- Upstream: meta.load_runs, meta.extraction_gaps.
-- Parameters: $day.
with
loaded as (
    select count(*) as loaded_runs
    from meta.load_runs
    where partition_date = $day and status = 'loaded'
),

gaps as (
    select count(*) as gap_rows
    from meta.extraction_gaps
    where partition_date = $day
)

select loaded.loaded_runs = 0 and gaps.gap_rows > 0 as is_permanent_gap
from loaded, gaps
