-- endpoint_freshness: one row per endpoint that had to land for the day, with the files and items landed and
-- a status (landed, permanent_gap or missing). Per-key /activity is expected on top of the configured endpoints
-- whenever the day's account-level activity has rows.
-- Grain: endpoint of the day. Key: endpoint.
-- Upstream: meta.landed_files, meta.extraction_gaps, meta.load_runs, staging.stg_account_activity.
-- Parameters: $day, $endpoints (the configured endpoints), $per_key (the name of per-key /activity).
with
landed as (
    select
        case
            when endpoint = '/activity' and json_extract_string(request_params, '$.api_key_hash') is not null
                then $per_key
            else endpoint
        end as endpoint,
        count(*) as landed_files,
        sum(item_count) as landed_items
    from meta.landed_files
    where partition_date = $day
    group by all
),

account_rows as (
    select count(*) as account_rows
    from staging.stg_account_activity
    where usage_date = $day
),

expected as (
    select unnest($endpoints::varchar[]) as endpoint
    union all
    select $per_key from account_rows where account_rows > 0
),

gap as (
    select
        count(*) filter (where partition_date = $day) > 0 as is_gap,
        (select count(*) from meta.load_runs where partition_date = $day and status = 'loaded') = 0
            as never_loaded
    from meta.extraction_gaps
)

select
    $day::date as usage_date,
    expected.endpoint,
    coalesce(landed.landed_files, 0) as landed_files,
    coalesce(landed.landed_items, 0) as landed_items,
    case
        when coalesce(landed.landed_files, 0) > 0 then 'landed'
        when gap.is_gap and gap.never_loaded then 'permanent_gap'
        else 'missing'
    end as status
from expected
cross join gap
left join landed using (endpoint)
order by expected.endpoint
