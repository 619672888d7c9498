-- per_request_vs_activity: per project with per-request records that day, their measured and estimated costs
-- (credits and BYOK apart) against the project's activity spend in marts.fct_daily_spend, with the allowed
-- amount (activity + tolerance). Empty until marts.fct_generations has rows for the day.
-- Grain: project of the day. Key: project ('(unowned)' for requests without one).
-- Upstream: marts.fct_generations, marts.fct_daily_spend.
-- Parameters: $day, $abs_tol, $rel_tol.
with
per_request as (
    select
        coalesce(project, '(unowned)') as project,
        count(*) as records,
        count(*) filter (where is_cost_measured) as measured_records,
        coalesce(marts.exact_sum(case when is_cost_measured then cost_usd end), 0) as measured_cost_usd,
        coalesce(marts.exact_sum(case when is_cost_measured then byok_cost_usd end), 0) as measured_byok_usd,
        coalesce(marts.exact_sum(case when not coalesce(is_cost_measured, false) then cost_usd end), 0)
            as estimated_cost_usd,
        coalesce(marts.exact_sum(case when not coalesce(is_cost_measured, false) then byok_cost_usd end), 0)
            as estimated_byok_usd
    from marts.fct_generations
    where usage_date = $day
    group by all
),

activity as (
    select project, marts.exact_sum(spend_usd) as spend_usd, marts.exact_sum(byok_spend_usd) as byok_usd
    from marts.fct_daily_spend
    where usage_date = $day
    group by project
)

select
    $day::date as usage_date,
    per_request.project,
    per_request.records,
    per_request.measured_records,
    per_request.measured_cost_usd,
    per_request.measured_byok_usd,
    per_request.estimated_cost_usd,
    per_request.estimated_byok_usd,
    per_request.measured_cost_usd + per_request.estimated_cost_usd as per_request_cost_usd,
    per_request.estimated_cost_usd
        / nullif(per_request.measured_cost_usd + per_request.estimated_cost_usd, 0) as estimated_share,
    coalesce(activity.spend_usd, 0) as activity_spend_usd,
    coalesce(activity.byok_usd, 0) as activity_byok_usd,
    per_request.measured_cost_usd + per_request.estimated_cost_usd - coalesce(activity.spend_usd, 0) as excess_usd,
    coalesce(activity.spend_usd, 0) * (1 + $rel_tol) + $abs_tol as allowed_usd,
    coalesce(activity.byok_usd, 0) * (1 + $rel_tol) + $abs_tol as byok_allowed_usd
from per_request
left join activity using (project)
order by per_request.project
