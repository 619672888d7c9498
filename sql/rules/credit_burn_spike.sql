-- credit_burn_spike: a project (or the account) burns far more credits than its keys usually do, counting
-- only growth from usage (more requests, longer prompts and outputs). The other parts of a spend move have
-- their own rules: mix and price → premium_share_rise / provider_concentration, wasted requests →
-- runaway_usage, unowned keys → unowned_spend; so one cause pages once.
-- Grain: one row per segment crossing the thresholds on the evaluated day. Segments: each owned project,
--   and the account ('*') over every project whose spend no annotation explains that day.
-- Upstream: intermediate.int_key_daily_spend, marts.rpt_key_usage_daily (wasted requests), marts.dim_api_key
--   (created_at), marts.dim_annotation, staging.stg_loaded_days.
-- Parameters: alert_day, baseline_days, baseline_method, min_history_days, min_ratio, min_impact_usd,
--   min_volume_usd.
-- Method (per key, so weekly jobs and sporadic keys keep their own rhythm): expected = median (or mean) of
-- the key's spend over its active days among the previous baseline_days days, else among the previous 28;
-- a key created in the last 28 days with no earlier use expects 0 (a new workload is growth); any other key
-- without history is left out. Usage-driven spend = today's tokens × (1 − wasted share of requests) × the
-- key's usual cost per token: what today's useful usage costs at the key's usual mix and prices.
-- Fires when both the usage-driven spend and the actual spend net of waste reach min_ratio × expected (so
-- a pure mix or price move, or usage growth that cheaper tokens cancel, does not fire) and the actual
-- excess is at least min_impact_usd. observed = spend net of waste; impact = observed − expected.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('baseline_method') as varchar) as baseline_method,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_ratio') as double) as min_ratio,
        cast(getvariable('min_impact_usd') as double) as min_impact_usd,
        cast(getvariable('min_volume_usd') as double) as min_volume_usd
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

history as (
    select count(*) as history_days
    from loaded_days, params
    where usage_date between params.day - params.baseline_days and params.day - 1
),

key_days as (
    select keys.usage_date, keys.api_key_hash, keys.api_key_name, keys.project, keys.spend_usd, keys.requests,
        keys.tokens
    from intermediate.int_key_daily_spend as keys
    -- getvariable, not params: constants at bind time, so the filter reaches fct_daily_spend's scan
    where keys.usage_date between cast(getvariable('alert_day') as date) - 28 and cast(getvariable('alert_day') as date)
),

with_waste as (
    select
        key_days.*,
        coalesce(waste.wasted_requests, 0) as wasted_requests,
        coalesce(waste.wasted_spend_usd, 0) as wasted_spend_usd
    from key_days
    left join marts.rpt_key_usage_daily as waste using (usage_date, api_key_hash)
),

baselines as (
    select
        today.api_key_hash,
        count(past.usage_date) filter (where past.usage_date >= params.day - params.baseline_days)
            as recent_active_days,
        count(past.usage_date) as active_days_28d,
        case when params.baseline_method = 'mean'
            then avg(past.spend_usd) filter (where past.usage_date >= params.day - params.baseline_days)
            else median(past.spend_usd) filter (where past.usage_date >= params.day - params.baseline_days)
        end as recent_spend_usd,
        case when params.baseline_method = 'mean' then avg(past.spend_usd) else median(past.spend_usd) end
            as spend_28d_usd,
        median(past.spend_usd / nullif(past.tokens, 0))
            filter (where past.usage_date >= params.day - params.baseline_days) as recent_cost_per_token,
        median(past.spend_usd / nullif(past.tokens, 0)) as cost_per_token_28d,
        median(past.requests) filter (where past.usage_date >= params.day - params.baseline_days)
            as recent_requests,
        median(past.requests) as requests_28d,
        median(past.tokens / nullif(past.requests, 0))
            filter (where past.usage_date >= params.day - params.baseline_days) as recent_tokens_per_request,
        median(past.tokens / nullif(past.requests, 0)) as tokens_per_request_28d
    from with_waste as today
    cross join params
    left join with_waste as past
        on past.api_key_hash = today.api_key_hash
        and past.usage_date between params.day - 28 and params.day - 1
        and past.spend_usd > 0
    where today.usage_date = params.day
    group by today.api_key_hash, params.day, params.baseline_days, params.baseline_method
),

keys_today as (
    select
        today.*,
        keys.created_at,
        case
            when baselines.recent_active_days > 0 then baselines.recent_spend_usd
            when baselines.active_days_28d > 0 then baselines.spend_28d_usd
            when cast(keys.created_at as date) > params.day - 28 then 0
        end as expected_usd,
        coalesce(
            case when baselines.recent_active_days > 0 then baselines.recent_cost_per_token end,
            baselines.cost_per_token_28d
        ) as usual_cost_per_token,
        case
            when baselines.recent_active_days > 0 then baselines.recent_requests
            when baselines.active_days_28d > 0 then baselines.requests_28d
            else 0
        end as expected_requests,
        coalesce(
            case when baselines.recent_active_days > 0 then baselines.recent_tokens_per_request end,
            baselines.tokens_per_request_28d
        ) as usual_tokens_per_request,
        baselines.active_days_28d = 0 as is_new_key
    from with_waste as today
    cross join params
    inner join baselines using (api_key_hash)
    left join marts.dim_api_key as keys using (api_key_hash)
    where today.usage_date = params.day and today.project <> '(unowned)'
),

usage_driven as (
    select
        *,
        case
            when tokens > 0 and usual_cost_per_token is not null
                then tokens * (1 - wasted_requests / nullif(requests, 0)) * usual_cost_per_token
            else spend_usd - wasted_spend_usd
        end as usage_driven_usd
    from keys_today
    where expected_usd is not null
),

explained_projects as (
    select distinct spend.project
    from usage_driven as spend
    cross join params
    inner join marts.dim_annotation as notes
        on params.day between notes.start_date and notes.end_date
        and notes.project in (spend.project, '*')
        and list_contains(notes.signals, 'spend')
),

segment_keys as (
    select project as segment_project, * from usage_driven
    union all
    select '*' as segment_project, * from usage_driven
    where project not in (select project from explained_projects)
),

key_changes as (
    select
        segment_project,
        coalesce(api_key_name, api_key_hash) as key_label,
        project,
        spend_usd - wasted_spend_usd - expected_usd as change_usd,
        is_new_key
    from segment_keys
),

contributors as (
    select
        segment_project,
        to_json(list({
            'dimension': 'api_key', 'name': key_label, 'project': project,
            'impact_usd': round(change_usd, 2), 'is_new_key': is_new_key
        } order by change_usd desc)[1:3]) as contributors
    from key_changes
    where change_usd > 0
    group by segment_project
),

segments as (
    select
        segment_project,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(usage_driven_usd) as usage_driven_usd,
        marts.exact_sum(expected_usd) as expected_usd,
        marts.exact_sum(wasted_spend_usd) as wasted_spend_usd,
        marts.exact_sum(case when is_new_key then spend_usd else 0 end) as new_key_spend_usd,
        sum(requests) as requests,
        sum(expected_requests) as expected_requests,
        sum(tokens) as tokens,
        sum(expected_requests * coalesce(usual_tokens_per_request, 0)) as expected_tokens,
        count(*) as keys_compared,
        count(*) filter (where spend_usd - wasted_spend_usd > expected_usd) as keys_rising
    from segment_keys
    group by segment_project
),

final as (
    select
        'credit_burn_spike' as rule_id,
        params.day as usage_date,
        'project=' || segments.segment_project as segment_key,
        segments.segment_project as project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        'spend' as signal,
        'spend_usd' as metric,
        segments.spend_usd - segments.wasted_spend_usd as observed_value,
        segments.expected_usd as expected_value,
        segments.expected_usd * params.min_ratio as threshold_value,
        segments.spend_usd - segments.wasted_spend_usd - segments.expected_usd as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.baseline_days as baseline_start,
        params.day - 1 as baseline_end,
        history.history_days,
        null as severity,
        coalesce(contributors.contributors, '[]'::json) as contributors,
        to_json({
            'spend_usd': round(segments.spend_usd, 2),
            'usage_driven_usd': round(segments.usage_driven_usd, 2),
            'usage_effect_usd': round(segments.usage_driven_usd - segments.expected_usd, 2),
            'mix_price_usd': round(segments.spend_usd - segments.wasted_spend_usd - segments.usage_driven_usd, 2),
            'waste_usd': round(segments.wasted_spend_usd, 2),
            'new_key_spend_usd': round(segments.new_key_spend_usd, 2),
            'ratio': round((segments.spend_usd - segments.wasted_spend_usd) / segments.expected_usd, 2),
            'usage_ratio': round(segments.usage_driven_usd / segments.expected_usd, 2),
            'request_ratio': round(segments.requests / nullif(segments.expected_requests, 0), 2),
            'tokens_per_request_ratio': round(
                (segments.tokens / nullif(segments.requests, 0))
                / nullif(segments.expected_tokens / nullif(segments.expected_requests, 0), 0), 2),
            'keys_compared': segments.keys_compared,
            'keys_rising': segments.keys_rising,
            'explained_projects_left_out': case when segments.segment_project = '*'
                then (select coalesce(list(project order by project), []) from explained_projects) end
        }) as facts
    from segments
    cross join params
    cross join history
    left join contributors using (segment_project)
    where history.history_days >= params.min_history_days
        and segments.expected_usd > 0
        and segments.spend_usd >= params.min_volume_usd
        and segments.usage_driven_usd >= params.min_ratio * segments.expected_usd
        and segments.spend_usd - segments.wasted_spend_usd >= params.min_ratio * segments.expected_usd
        and segments.spend_usd - segments.wasted_spend_usd - segments.expected_usd >= params.min_impact_usd
)

select * from final
