-- rpt_blind_spots_daily: where each project's numbers are blind or estimated, so reports can say so instead
-- of showing a confident zero: per-request coverage, BYOK spend (estimated at market rates by OpenRouter),
-- spend no listed key accounts for, and days that left the API window before they were captured.
-- Grain: usage_date × project (project '*' = whole account). Key: the same two columns.
-- Upstream: marts.fct_daily_spend, marts.fct_generations, staging.stg_extraction_gaps,
--   staging.stg_account_activity, staging.stg_activity, staging.stg_credits (the days that have data).
-- Partition: usage_date; builds the days in getvariable('mart_days') that have data.
-- Per-request columns are NULL (unknown) when no per-request data was loaded for the day at all, and 0 when
-- some project has per-request data that day but this one has none (a real blind spot). Coverage shares are
-- capped at 1 (sampled per-request costs can exceed the credit spend by rounding).
-- gap_days_30d counts the permanent gaps (staging.stg_extraction_gaps) among the 30 days ending on the day.
with
build_days as (
    select usage_date from marts.build_days()
),

-- The days built as a constant list (getvariable folds at bind time), so the filters reach the raw scans
-- instead of typing every day ever loaded.
data_days as (
    select usage_date from staging.stg_account_activity
    where list_contains(getvariable('mart_days'), usage_date)
    union
    select usage_date from staging.stg_activity
    where list_contains(getvariable('mart_days'), usage_date)
    union
    select snapshot_date as usage_date from staging.stg_credits
    where list_contains(getvariable('mart_days'), snapshot_date)
),

days as (
    select usage_date from build_days
    semi join data_days using (usage_date)
),

spend as (
    select * from marts.fct_daily_spend
    semi join days using (usage_date)
    where list_contains(getvariable('mart_days'), usage_date)
),

spend_by_project as (
    select
        usage_date,
        project,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(byok_spend_usd) as byok_spend_usd,
        sum(requests) as requests,
        coalesce(marts.exact_sum(case when api_key_hash = '(unattributed)' then spend_usd end), 0)
            as unattributed_spend_usd
    from spend
    group by usage_date, project
),

spend_by_account as (
    select
        days.usage_date,
        '*' as project,
        coalesce(marts.exact_sum(spend.spend_usd), 0) as spend_usd,
        coalesce(marts.exact_sum(spend.byok_spend_usd), 0) as byok_spend_usd,
        coalesce(sum(spend.requests), 0) as requests,
        coalesce(marts.exact_sum(case when spend.api_key_hash = '(unattributed)' then spend.spend_usd end), 0)
            as unattributed_spend_usd
    from days
    left join spend using (usage_date)
    group by days.usage_date
),

segments as (
    select * from spend_by_project
    union all by name
    select * from spend_by_account
),

generations as (
    select usage_date, coalesce(project, '(unowned)') as project, cost_usd
    from marts.fct_generations
    semi join days using (usage_date)
),

per_request_days as (
    select distinct usage_date from generations
),

per_request_by_segment as (
    select usage_date, project, count(*) as per_request_requests, marts.exact_sum(cost_usd) as per_request_cost_usd
    from generations
    group by usage_date, project
    union all
    select usage_date, '*' as project, count(*), marts.exact_sum(cost_usd)
    from generations
    group by usage_date
),

gaps as (
    select distinct gap_date from staging.stg_extraction_gaps
),

gap_windows as (
    select
        days.usage_date,
        count(gaps.gap_date) as gap_days_30d,
        coalesce(list(gaps.gap_date order by gaps.gap_date) filter (where gaps.gap_date is not null), [])
            as gap_dates
    from days
    left join gaps
        on gaps.gap_date between days.usage_date - interval 29 day and days.usage_date
    group by days.usage_date
),

assessed as (
    select
        segments.*,
        segments.spend_usd + segments.byok_spend_usd as total_spend_usd,
        per_request_days.usage_date is not null as day_has_per_request_data,
        case when per_request_days.usage_date is not null
            then coalesce(per_request.per_request_requests, 0) end as per_request_requests,
        case when per_request_days.usage_date is not null
            then coalesce(per_request.per_request_cost_usd, 0) end as per_request_cost_usd,
        gap_windows.gap_days_30d,
        gap_windows.gap_dates
    from segments
    left join per_request_days using (usage_date)
    left join per_request_by_segment as per_request using (usage_date, project)
    left join gap_windows using (usage_date)
),

final as (
    select
        ---------- keys
        usage_date,
        project,
        ---------- spend (USD)
        spend_usd,
        byok_spend_usd,
        total_spend_usd,
        requests,
        ---------- BYOK (estimated at market rates by OpenRouter)
        byok_spend_usd / nullif(total_spend_usd, 0) as byok_spend_share,
        ---------- per-request coverage (NULL = no per-request data loaded that day)
        coalesce(per_request_requests > 0, false) as has_per_request_data,
        per_request_requests,
        per_request_cost_usd,
        -- least() skips NULLs, so an unknown coverage must stay NULL explicitly
        case when per_request_requests is not null
            then least(1.0, per_request_requests / nullif(requests, 0)) end as per_request_request_coverage_share,
        case when per_request_cost_usd is not null
            then least(1.0, per_request_cost_usd / nullif(total_spend_usd, 0)) end as per_request_spend_coverage_share,
        ---------- attribution and capture gaps
        unattributed_spend_usd,
        cast(gap_days_30d as integer) as gap_days_30d,
        gap_dates,
        list_filter([
            case when requests > 0 and not coalesce(per_request_requests > 0, false)
                then 'no per-request data' end,
            case when byok_spend_usd > 0 then 'BYOK spend estimated at market rates' end,
            case when unattributed_spend_usd > 0 then 'spend not attributed to any listed key' end,
            case when gap_days_30d > 0 then 'days never captured in the last 30 days' end
        ], lambda label: label is not null) as blind_spots
    from assessed
)

select * from final
