-- fallback_rate_rise: a larger share of a project's requests than usual was served only after another
-- provider or model failed (retries and fallbacks), costing extra.
-- Grain: one row per project crossing the thresholds on the evaluated day. Segment: project.
-- Upstream: marts.fct_fallback_daily (per-request data: empty until request logs are loaded, and then the
--   rule stays silent), marts.dim_annotation (incident days).
-- Parameters: alert_day, baseline_days, min_history_days, min_share_change, min_requests, min_impact_usd.
-- Method: usual share = fallback requests ÷ requests pooled over the project's days with per-request data
-- among the previous baseline_days days, leaving out days an incident annotation covers for its fallback
-- rate; history counts those days. The rise must hold for the lower end of today's 95% interval, not only
-- for the point estimate: the lower of the Wilson bound on today's classified requests (each request a
-- trial of the project's fallback rate, so 150 requests are judged as 150, however many were logged) and
-- the sampling interval of rpt_unit_economics_daily when part of the traffic was classified. The interval
-- protects small samples; min_requests is only the floor below which a day's share means nothing (one
-- request would move it by several points). Impact = today's fallback extra cost above the usual extra
-- cost per request, scaled to the project's traffic (fct_fallback_daily.traffic_* columns).
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_share_change') as double) as min_share_change,
        cast(getvariable('min_requests') as bigint) as min_requests,
        cast(getvariable('min_impact_usd') as double) as min_impact_usd
),

incident_days as (
    select distinct notes.project, cast(unnest(generate_series(
        notes.start_date, notes.end_date, interval 1 day)) as date) as usage_date
    from marts.dim_annotation as notes
    where notes.kind = 'incident' and list_contains(notes.signals, 'fallback_rate')
),

workflow_days as (
    select fallbacks.*
    from marts.fct_fallback_daily as fallbacks, params
    where fallbacks.usage_date between params.day - params.baseline_days and params.day
        and fallbacks.project <> '(unowned)'
),

baseline_workflow_days as (
    select *
    from workflow_days, params
    where usage_date < params.day
        and not exists (
            select 1 from incident_days
            where incident_days.usage_date = workflow_days.usage_date
                and incident_days.project in (workflow_days.project, '*')
        )
),

usual as (
    select
        project,
        count(distinct usage_date) as history_days,
        sum(fallback_requests) / nullif(sum(requests), 0) as usual_share,
        coalesce(marts.exact_sum(coalesce(traffic_fallback_extra_cost_usd, fallback_extra_cost_usd)), 0)
            / nullif(sum(coalesce(traffic_requests, requests)), 0) as usual_extra_cost_per_request
    from baseline_workflow_days
    group by project
),

usual_workflows as (
    select project, workflow, sum(fallback_requests) / nullif(sum(requests), 0) as usual_share
    from baseline_workflow_days
    group by project, workflow
),

today_workflows as (
    select workflow_days.*
    from workflow_days, params
    where workflow_days.usage_date = params.day
),

contributors as (
    select
        today.project,
        to_json(list({
            'dimension': 'workflow', 'name': today.workflow,
            'share': round(today.fallback_requests / nullif(today.requests, 0), 3),
            'usual_share': round(usual_workflows.usual_share, 3),
            'impact_usd': round(today.fallback_extra_cost_usd, 2)
        } order by today.fallback_requests - today.requests * coalesce(usual_workflows.usual_share, 0) desc)[1:3])
            as contributors
    from today_workflows as today
    left join usual_workflows using (project, workflow)
    group by today.project
),

today as (
    select
        project,
        sum(requests) as requests,
        sum(coalesce(classified_requests, requests)) as classified_requests,
        sum(fallback_requests) as fallback_requests,
        sum(fallback_requests) / nullif(sum(requests), 0) as share,
        sum(coalesce(traffic_requests, requests)) as traffic_requests,
        coalesce(marts.exact_sum(spend_usd), 0) as spend_usd,
        coalesce(marts.exact_sum(fallback_spend_usd), 0) as fallback_spend_usd,
        coalesce(marts.exact_sum(coalesce(traffic_fallback_extra_cost_usd, fallback_extra_cost_usd)), 0)
            as fallback_extra_cost_usd
    from today_workflows
    group by project
),

today_interval as (
    select
        today.project,
        least(
            economics.fallback_request_share_ci_low,
            marts.wilson_bound(today.share, today.classified_requests, 1.96, -1)
        ) as share_ci_low
    from today
    cross join params
    left join marts.rpt_unit_economics_daily as economics
        on economics.usage_date = params.day and economics.project = today.project
),

final as (
    select
        'fallback_rate_rise' as rule_id,
        params.day as usage_date,
        'project=' || today.project as segment_key,
        today.project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        'fallback_rate' as signal,
        'fallback_request_share' as metric,
        today.share as observed_value,
        usual.usual_share as expected_value,
        usual.usual_share + params.min_share_change as threshold_value,
        greatest(today.fallback_extra_cost_usd - usual.usual_extra_cost_per_request * today.traffic_requests, 0)
            as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.baseline_days as baseline_start,
        params.day - 1 as baseline_end,
        usual.history_days,
        null as severity,
        coalesce(contributors.contributors, '[]'::json) as contributors,
        to_json({
            'requests': today.requests,
            'classified_requests': today.classified_requests,
            'traffic_requests': today.traffic_requests,
            'fallback_requests': today.fallback_requests,
            'spend_usd': round(today.spend_usd, 2),
            'fallback_spend_usd': round(today.fallback_spend_usd, 2),
            'fallback_extra_cost_usd': round(today.fallback_extra_cost_usd, 2),
            'fallback_share_ci_low': round(today_interval.share_ci_low, 3)
        }) as facts
    from today
    cross join params
    inner join usual using (project)
    left join contributors using (project)
    left join today_interval using (project)
    where usual.history_days >= params.min_history_days
        and today.classified_requests >= params.min_requests
        and today_interval.share_ci_low - usual.usual_share >= params.min_share_change
        and greatest(today.fallback_extra_cost_usd - usual.usual_extra_cost_per_request * today.traffic_requests, 0)
            >= params.min_impact_usd
)

select * from final
