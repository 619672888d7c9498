-- provider_concentration: the providers serving a project's traffic shifted: spend concentrated on other
-- providers than usual for the same keys and models (an outage, a routing change, a provider dropping out).
-- Measured within each key × model, so a change of model mix (premium_share_rise) is not a routing shift.
-- Grain: one row per project crossing the thresholds on the evaluated day. Segment: project.
-- Upstream: marts.fct_daily_spend, marts.dim_annotation (incident days), staging.stg_loaded_days.
-- Parameters: alert_day, baseline_days, min_history_days, min_shift_share, min_impact_usd, min_volume_usd.
-- Method: each key × model's usual provider shares pool its spend over the previous baseline_days days,
-- leaving out days an incident annotation covers for the project's provider mix (so the recovery from an
-- outage does not look like a new shift). Expected spend per provider = Σ today's key × model spend × usual
-- share. Shift = ½ Σ |actual − expected| ÷ spend (total variation distance, 0..1); impact = the USD that
-- moved to other providers.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_shift_share') as double) as min_shift_share,
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

incident_days as (
    select distinct notes.project, cast(unnest(generate_series(
        notes.start_date, notes.end_date, interval 1 day)) as date) as usage_date
    from marts.dim_annotation as notes
    where notes.kind = 'incident' and list_contains(notes.signals, 'provider_mix')
),

routed as (
    select
        spend.usage_date,
        spend.project,
        spend.api_key_hash,
        spend.model_permaslug,
        spend.provider_name,
        marts.exact_sum(spend.spend_usd) as spend_usd
    from marts.fct_daily_spend as spend, params
    where spend.usage_date between params.day - params.baseline_days and params.day
        and spend.project <> '(unowned)'
    group by all
),

usual_by_provider as (
    select api_key_hash, model_permaslug, provider_name, marts.exact_sum(spend_usd) as spend_usd
    from routed, params
    where usage_date < params.day
        and not exists (
            select 1 from incident_days
            where incident_days.usage_date = routed.usage_date
                and incident_days.project in (routed.project, '*')
        )
    group by all
),

usual_shares as (
    select
        *,
        spend_usd / nullif(sum(spend_usd) over (partition by api_key_hash, model_permaslug), 0) as usual_share
    from usual_by_provider
),

key_models_today as (
    select project, api_key_hash, model_permaslug, marts.exact_sum(spend_usd) as spend_usd
    from routed, params
    where usage_date = params.day
        and (api_key_hash, model_permaslug) in (
            select (api_key_hash, model_permaslug) from usual_shares where usual_share is not null
        )
    group by all
),

expected as (
    select today.project, usual.provider_name, marts.exact_sum(today.spend_usd * usual.usual_share) as spend_usd
    from key_models_today as today
    inner join usual_shares as usual using (api_key_hash, model_permaslug)
    group by all
),

actual as (
    select routed.project, routed.provider_name, marts.exact_sum(routed.spend_usd) as spend_usd
    from routed
    cross join params
    semi join key_models_today using (api_key_hash, model_permaslug)
    where routed.usage_date = params.day
    group by all
),

joined as (
    select
        coalesce(actual.project, expected.project) as project,
        coalesce(actual.provider_name, expected.provider_name) as provider_name,
        coalesce(actual.spend_usd, 0) as actual_usd,
        coalesce(expected.spend_usd, 0) as expected_usd
    from actual
    full outer join expected using (project, provider_name)
),

providers as (
    select
        *,
        actual_usd / nullif(sum(actual_usd) over (partition by project), 0) as share,
        expected_usd / nullif(sum(expected_usd) over (partition by project), 0) as usual_share
    from joined
),

projects as (
    select
        project,
        marts.exact_sum(actual_usd) as spend_usd,
        0.5 * marts.exact_sum(abs(actual_usd - expected_usd)) as moved_usd,
        arg_max(provider_name, actual_usd) as top_provider_name,
        max(actual_usd) as top_provider_usd,
        arg_max(provider_name, expected_usd) as usual_top_provider_name,
        max(expected_usd) as usual_top_provider_usd,
        marts.exact_sum(actual_usd * actual_usd) as actual_square_sum,
        marts.exact_sum(expected_usd * expected_usd) as expected_square_sum,
        to_json(list({
            'dimension': 'provider', 'name': provider_name,
            'impact_usd': round(actual_usd - expected_usd, 2),
            'share': round(share, 3),
            'usual_share': round(usual_share, 3)
        } order by abs(actual_usd - expected_usd) desc)[1:3]) as contributors
    from providers
    group by project
),

final as (
    select
        'provider_concentration' as rule_id,
        params.day as usage_date,
        'project=' || projects.project as segment_key,
        projects.project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        projects.top_provider_name as provider_name,
        null as workflow,
        'provider_mix' as signal,
        'provider_mix_shift' as metric,
        projects.moved_usd / projects.spend_usd as observed_value,
        0.0 as expected_value,
        params.min_shift_share as threshold_value,
        projects.moved_usd as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.baseline_days as baseline_start,
        params.day - 1 as baseline_end,
        history.history_days,
        null as severity,
        projects.contributors,
        to_json({
            'spend_usd': round(projects.spend_usd, 2),
            'top_provider': projects.top_provider_name,
            'top_provider_share': round(projects.top_provider_usd / projects.spend_usd, 3),
            'usual_top_provider': projects.usual_top_provider_name,
            'usual_top_provider_share': round(projects.usual_top_provider_usd / projects.spend_usd, 3),
            'hhi': round(projects.actual_square_sum / (projects.spend_usd * projects.spend_usd), 3),
            'usual_hhi': round(projects.expected_square_sum / (projects.spend_usd * projects.spend_usd), 3)
        }) as facts
    from projects
    cross join params
    cross join history
    where history.history_days >= params.min_history_days
        and projects.spend_usd >= params.min_volume_usd
        and projects.moved_usd / projects.spend_usd >= params.min_shift_share
        and projects.moved_usd >= params.min_impact_usd
)

select * from final
