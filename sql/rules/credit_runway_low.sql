-- credit_runway_low: the credit balance covers fewer days of burn than the rule requires (credit depletion).
-- Top-ups are kept apart from burn by fct_credit_balance, so a purchase never looks like a slowdown.
-- Grain: at most one row for the evaluated day. Segment: the account ('*').
-- Upstream: marts.fct_credit_balance, marts.rpt_unit_economics_daily (projects burning the most).
-- Parameters: alert_day, min_runway_days, critical_runway_days, min_history_days, min_volume_usd.
-- Method: runway_days = balance ÷ mean daily burn over the loaded days among the last 7; it needs at least
-- min_history_days days of burn in that mean and a burn of min_volume_usd a day. Severity is critical below
-- critical_runway_days. Impact = the top-up that restores min_runway_days of runway at the current burn.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('min_runway_days') as double) as min_runway_days,
        cast(getvariable('critical_runway_days') as double) as critical_runway_days,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_volume_usd') as double) as min_volume_usd
),

balance as (
    select credits.*
    from marts.fct_credit_balance as credits, params
    where credits.as_of_date = params.day
),

burners as (
    select
        to_json(list({
            'dimension': 'project', 'name': economics.project, 'spend_usd': round(economics.spend_usd, 2)
        } order by economics.spend_usd desc)[1:3]) as contributors
    from marts.rpt_unit_economics_daily as economics, params
    where economics.usage_date = params.day and economics.project <> '*'
),

final as (
    select
        'credit_runway_low' as rule_id,
        params.day as usage_date,
        'account' as segment_key,
        '*' as project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'runway_days' as metric,
        balance.runway_days as observed_value,
        params.min_runway_days as expected_value,
        params.min_runway_days as threshold_value,
        params.min_runway_days * balance.burn_7d_avg_usd - greatest(balance.balance_usd, 0) as impact_usd,
        params.day - 6 as window_start,
        params.day as window_end,
        params.day - 6 as baseline_start,
        params.day as baseline_end,
        balance.burn_days_in_avg as history_days,
        case when balance.runway_days < params.critical_runway_days then 'critical' end as severity,
        coalesce(burners.contributors, '[]'::json) as contributors,
        to_json({
            'balance_usd': round(balance.balance_usd, 2),
            'burn_usd': round(balance.burn_usd, 2),
            'burn_7d_avg_usd': round(balance.burn_7d_avg_usd, 2),
            'topup_usd': round(balance.topup_usd, 2),
            'projected_depletion_date': balance.projected_depletion_date,
            'critical_runway_days': params.critical_runway_days
        }) as facts
    from balance
    cross join params
    cross join burners
    where balance.runway_days is not null
        and balance.burn_days_in_avg >= params.min_history_days
        and balance.burn_7d_avg_usd >= params.min_volume_usd
        and balance.runway_days < params.min_runway_days
)

select * from final
