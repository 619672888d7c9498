-- premium_share_rise: a project sends a larger share of its spend to premium models than its keys usually
-- do (premium-model drift), measured within each key so a weekly job that is all premium does not look like
-- drift on the day it runs.
-- Grain: one row per project crossing the thresholds on the evaluated day. Segment: project.
-- Upstream: intermediate.int_key_daily_spend (premium spend per key and day), marts.fct_daily_spend (premium
--   models of the day), staging.stg_loaded_days.
-- Parameters: alert_day, baseline_days, min_history_days, min_share_change, min_impact_usd, min_volume_usd.
-- Method: each key's usual premium share = its premium spend ÷ its spend over the previous baseline_days
-- days (pooled, spend-weighted); the project's expected share = Σ today's key spend × usual share ÷ today's
-- spend, over keys with history. Impact = today's premium spend above that expectation (USD).
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_share_change') as double) as min_share_change,
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
    select keys.usage_date, keys.api_key_hash, keys.api_key_name, keys.project, keys.spend_usd,
        keys.premium_spend_usd
    from intermediate.int_key_daily_spend as keys
    -- getvariable, not params: constants at bind time, so the filter reaches fct_daily_spend's scan
    where keys.usage_date between cast(getvariable('alert_day') as date) - cast(getvariable('baseline_days') as integer)
        and cast(getvariable('alert_day') as date)
),

usual as (
    select
        api_key_hash,
        marts.exact_sum(premium_spend_usd) / nullif(marts.exact_sum(spend_usd), 0) as usual_premium_share
    from key_days, params
    where usage_date < params.day
    group by api_key_hash
),

keys_today as (
    select key_days.*, usual.usual_premium_share
    from key_days
    cross join params
    inner join usual using (api_key_hash)
    where key_days.usage_date = params.day and usual.usual_premium_share is not null
),

models_today as (
    select
        spend.project,
        spend.model,
        marts.exact_sum(spend.spend_usd) as spend_usd
    from marts.fct_daily_spend as spend, params
    where spend.usage_date = params.day and spend.is_premium
        and spend.api_key_hash in (select api_key_hash from keys_today)
    group by spend.project, spend.model
),

model_contributors as (
    select
        project,
        list({'dimension': 'model', 'name': model, 'spend_usd': round(spend_usd, 2)} order by spend_usd desc)[1:2]
            as models
    from models_today
    group by project
),

key_contributors as (
    select
        project,
        list({
            'dimension': 'api_key', 'name': coalesce(api_key_name, api_key_hash),
            'impact_usd': round(premium_spend_usd - spend_usd * usual_premium_share, 2)
        } order by premium_spend_usd - spend_usd * usual_premium_share desc)[1:2] as api_keys
    from keys_today
    where premium_spend_usd > spend_usd * usual_premium_share
    group by project
),

projects as (
    select
        project,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(premium_spend_usd) as premium_spend_usd,
        marts.exact_sum(spend_usd * usual_premium_share) as expected_premium_spend_usd,
        count(*) as keys_compared
    from keys_today
    where project <> '(unowned)'
    group by project
),

final as (
    select
        'premium_share_rise' as rule_id,
        params.day as usage_date,
        'project=' || projects.project as segment_key,
        projects.project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        'premium_share' as signal,
        'premium_spend_share' as metric,
        projects.premium_spend_usd / projects.spend_usd as observed_value,
        projects.expected_premium_spend_usd / projects.spend_usd as expected_value,
        projects.expected_premium_spend_usd / projects.spend_usd + params.min_share_change as threshold_value,
        projects.premium_spend_usd - projects.expected_premium_spend_usd as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.baseline_days as baseline_start,
        params.day - 1 as baseline_end,
        history.history_days,
        null as severity,
        to_json(coalesce(model_contributors.models, []) || coalesce(key_contributors.api_keys, []))
            as contributors,
        to_json({
            'spend_usd': round(projects.spend_usd, 2),
            'premium_spend_usd': round(projects.premium_spend_usd, 2),
            'expected_premium_spend_usd': round(projects.expected_premium_spend_usd, 2),
            'keys_compared': projects.keys_compared
        }) as facts
    from projects
    cross join params
    cross join history
    left join model_contributors using (project)
    left join key_contributors using (project)
    where history.history_days >= params.min_history_days
        and projects.spend_usd >= params.min_volume_usd
        and (projects.premium_spend_usd - projects.expected_premium_spend_usd) / projects.spend_usd
            >= params.min_share_change
        and projects.premium_spend_usd - projects.expected_premium_spend_usd >= params.min_impact_usd
)

select * from final
