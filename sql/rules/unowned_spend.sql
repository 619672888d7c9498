-- unowned_spend: spend that no project owns (ownership gaps). Two findings:
--   - a persistent gap: keys no project owns spent at least max_share of the account over the trailing
--     window (mature FinOps practice allocates 95% or more of spend), and at least min_volume_usd;
--   - a new key with spend that nobody owns, the first day it appears, whatever its share.
-- Grain: at most one row for the unowned keys as a whole ('project=(unowned)') plus one row per new unowned
--   key ('api_key=<hash>') on the evaluated day.
-- Upstream: intermediate.int_key_daily_spend, marts.dim_api_key (created_at), staging.stg_loaded_days.
-- Parameters: alert_day, window_days, min_history_days, max_share, min_volume_usd, new_key_lookback_days.
-- Expected = max_share × the account's spend over the window (the tolerated tail); impact = unowned spend
-- over the window. A key is new when it has spend today and none on the loaded days among the previous
-- new_key_lookback_days, of which at least min_history_days are loaded (so a fresh warehouse does not call
-- every key new), and either it was created within those days or they are all loaded (an old key first
-- seen in a short history may have spent before it); its impact is its spend today. Spend no listed key
-- accounts for ('(unattributed)') is the blind-spot report's, not a key.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('window_days') as integer) as window_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('max_share') as double) as max_share,
        cast(getvariable('min_volume_usd') as double) as min_volume_usd,
        cast(getvariable('new_key_lookback_days') as integer) as new_key_lookback_days
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

history as (
    select count(*) as history_days
    from loaded_days, params
    where usage_date between params.day - params.window_days + 1 and params.day
),

lookback_history as (
    select count(*) as history_days
    from loaded_days, params
    where usage_date between params.day - params.new_key_lookback_days and params.day - 1
),

window_spend as (
    select keys.*
    from intermediate.int_key_daily_spend as keys
    -- getvariable, not params: constants at bind time, so the filter reaches fct_daily_spend's scan
    where
        keys.usage_date
        between cast(getvariable('alert_day') as date) - cast(getvariable('window_days') as integer) + 1
        and cast(getvariable('alert_day') as date)
),

totals as (
    select
        marts.exact_sum(spend_usd) as account_spend_usd,
        coalesce(marts.exact_sum(case when not is_owned then spend_usd end), 0) as unowned_spend_usd,
        coalesce(marts.exact_sum(
            case when not is_owned and usage_date = (select day from params) then spend_usd end
        ), 0) as unowned_spend_today_usd,
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

gap as (
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
            'finding': 'persistent_share',
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
),

keys_today as (
    select window_spend.api_key_hash, window_spend.api_key_name, window_spend.workspace_name,
        window_spend.spend_usd, window_spend.requests
    from window_spend, params
    where window_spend.usage_date = params.day and not window_spend.is_owned
        and window_spend.api_key_hash <> '(unattributed)' and window_spend.spend_usd > 0
),

earlier_spenders as (
    select distinct keys.api_key_hash
    from intermediate.int_key_daily_spend as keys
    where
        keys.usage_date
        between cast(getvariable('alert_day') as date) - cast(getvariable('new_key_lookback_days') as integer)
        and cast(getvariable('alert_day') as date) - 1
        and keys.spend_usd > 0
),

new_keys as (
    select
        'unowned_spend' as rule_id,
        params.day as usage_date,
        'api_key=' || keys_today.api_key_hash as segment_key,
        '(unowned)' as project,
        keys_today.api_key_hash,
        keys_today.api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'new_unowned_key_spend_usd' as metric,
        keys_today.spend_usd as observed_value,
        0.0 as expected_value,
        0.0 as threshold_value,
        keys_today.spend_usd as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.new_key_lookback_days as baseline_start,
        params.day - 1 as baseline_end,
        lookback_history.history_days,
        null as severity,
        to_json([{
            'dimension': 'api_key', 'name': coalesce(keys_today.api_key_name, keys_today.api_key_hash),
            'workspace': keys_today.workspace_name, 'spend_usd': round(keys_today.spend_usd, 2)
        }]) as contributors,
        to_json({
            'finding': 'new_key',
            'spend_usd': round(keys_today.spend_usd, 2),
            'requests': keys_today.requests,
            'workspace': keys_today.workspace_name,
            'created_date': cast(dim.created_at as date),
            'lookback_days': params.new_key_lookback_days
        }) as facts
    from keys_today
    cross join params
    cross join lookback_history
    left join marts.dim_api_key as dim using (api_key_hash)
    where lookback_history.history_days >= params.min_history_days
        and keys_today.api_key_hash not in (select api_key_hash from earlier_spenders)
        and (cast(dim.created_at as date) >= params.day - params.new_key_lookback_days
             or lookback_history.history_days >= params.new_key_lookback_days)
),

final as (
    select * from gap
    union all
    select * from new_keys
)

select * from final
