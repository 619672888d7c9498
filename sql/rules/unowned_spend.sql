-- unowned_spend: a material share of the account's spend comes from keys no project owns (ownership gaps).
-- A small standing tail (personal keys, experiments) is tolerated and listed by the digest; the rule pages
-- when unowned spend over the trailing window passes both a USD floor and a share of the account's spend.
-- Grain: at most one row for the evaluated day. Segment: the unowned keys as a whole ('(unowned)').
-- Upstream: marts.fct_daily_spend, staging.stg_loaded_days.
-- Parameters: alert_day, window_days, min_history_days, max_share, min_volume_usd.
-- Expected = max_share × the account's spend over the window (the tolerated tail); impact = unowned spend
-- over the window.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('window_days') as integer) as window_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('max_share') as double) as max_share,
        cast(getvariable('min_volume_usd') as double) as min_volume_usd
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

history as (
    select count(*) as history_days
    from loaded_days, params
    where usage_date between params.day - params.window_days + 1 and params.day
),

window_spend as (
    select spend.*
    from marts.fct_daily_spend as spend, params
    where spend.usage_date between params.day - params.window_days + 1 and params.day
),

totals as (
    select
        marts.exact_sum(spend_usd) as account_spend_usd,
        coalesce(marts.exact_sum(case when not is_owned then spend_usd end), 0) as unowned_spend_usd,
        coalesce(marts.exact_sum(case when not is_owned and usage_date = (select day from params) then spend_usd end), 0)
            as unowned_spend_today_usd,
        count(distinct case when not is_owned then api_key_hash end) as unowned_keys
    from window_spend
),

unowned_keys as (
    select
        coalesce(any_value(api_key_name), api_key_hash) as key_label,
        any_value(workspace_name) as workspace_name,
        marts.exact_sum(spend_usd) as spend_usd
    from window_spend
    where not is_owned
    group by api_key_hash
),

contributors as (
    select to_json(list({
        'dimension': 'api_key', 'name': key_label, 'workspace': workspace_name, 'spend_usd': round(spend_usd, 2)
    } order by spend_usd desc)[1:3]) as contributors
    from unowned_keys
),

final as (
    select
        'unowned_spend' as rule_id,
        params.day as usage_date,
        'project=(unowned)' as segment_key,
        '(unowned)' as project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'unowned_spend_share' as metric,
        totals.unowned_spend_usd / totals.account_spend_usd as observed_value,
        params.max_share as expected_value,
        params.max_share as threshold_value,
        totals.unowned_spend_usd as impact_usd,
        params.day - params.window_days + 1 as window_start,
        params.day as window_end,
        null::date as baseline_start,
        null::date as baseline_end,
        history.history_days,
        null as severity,
        coalesce(contributors.contributors, '[]'::json) as contributors,
        to_json({
            'unowned_spend_usd': round(totals.unowned_spend_usd, 2),
            'unowned_spend_today_usd': round(totals.unowned_spend_today_usd, 2),
            'account_spend_usd': round(totals.account_spend_usd, 2),
            'unowned_keys': totals.unowned_keys,
            'window_days': params.window_days
        }) as facts
    from totals
    cross join params
    cross join history
    cross join contributors
    where history.history_days >= params.min_history_days
        and totals.account_spend_usd > 0
        and totals.unowned_spend_usd >= params.min_volume_usd
        and totals.unowned_spend_usd >= params.max_share * totals.account_spend_usd
)

select * from final
