-- budget_threshold: a project's spend for the day, the week to date or the month to date reached a
-- configured share of its budget (e.g. 80% and 100%). Launch windows already raise the effective budgets
-- (rpt_budget_status_daily), so an announced launch does not trip them.
-- Grain: one row per project × period whose spend crossed at least one level on the evaluated day; only the
--   highest level crossed is reported. Segments: project × daily; project × weekly × week start; project ×
--   monthly × month start, so each week and month fires once per level and a new level is an escalation.
-- Upstream: marts.rpt_budget_status_daily; marts.fct_daily_spend for the contributors (the project's three
--   largest keys and two largest models over the period).
-- Parameters: alert_day, daily_levels, weekly_levels, monthly_levels (lists of budget shares),
--   critical_level and critical_periods (severity is critical from that share in those periods, warning
--   otherwise), min_volume_usd (the smallest effective budget considered).
-- Impact: spend above the effective budget (0 below it); for the month, the forecast overspend at month end
-- when that is larger.
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('daily_levels') as double[]) as daily_levels,
        cast(getvariable('weekly_levels') as double[]) as weekly_levels,
        cast(getvariable('monthly_levels') as double[]) as monthly_levels,
        cast(getvariable('critical_level') as double) as critical_level,
        cast(getvariable('critical_periods') as varchar[]) as critical_periods,
        cast(getvariable('min_volume_usd') as double) as min_volume_usd
),

status as (
    select budgets.*
    from marts.rpt_budget_status_daily as budgets, params
    where budgets.usage_date = params.day
),

periods as (
    select
        project, budget_owner, 'daily' as period, usage_date as period_start, spend_usd as period_spend_usd,
        daily_budget_usd as budget_usd, effective_daily_budget_usd as effective_budget_usd,
        daily_budget_used_ratio as used_ratio, null::double as forecast_usd, velocity_multiplier
    from status
    union all
    select
        project, budget_owner, 'weekly', cast(date_trunc('week', usage_date) as date), week_to_date_spend_usd,
        weekly_budget_usd, effective_weekly_budget_usd, weekly_budget_used_ratio, null::double,
        velocity_multiplier
    from status
    union all
    select
        project, budget_owner, 'monthly', cast(date_trunc('month', usage_date) as date), month_to_date_spend_usd,
        monthly_budget_usd, effective_monthly_budget_usd, monthly_budget_used_ratio, forecast_month_end_spend_usd,
        velocity_multiplier
    from status
),

crossed as (
    select
        periods.*,
        list_max(list_filter(
            case periods.period
                when 'daily' then params.daily_levels
                when 'weekly' then params.weekly_levels
                else params.monthly_levels
            end,
            lambda level: periods.used_ratio >= level
        )) as level
    from periods, params
    where periods.effective_budget_usd >= params.min_volume_usd and periods.used_ratio is not null
),

period_spend as (
    select
        crossed.project,
        crossed.period,
        coalesce(spend.api_key_name, spend.api_key_hash) as key_name,
        spend.model_permaslug,
        spend.spend_usd
    from crossed
    cross join params
    inner join marts.fct_daily_spend as spend
        on spend.project = crossed.project and spend.usage_date between crossed.period_start and params.day
    where crossed.level is not null
),

-- One pass for both dimensions: grouping sets give each key's and each model's spend over the period.
contributions as (
    select
        project,
        period,
        case when grouping(key_name) = 0 then 'key' else 'model' end as dimension,
        coalesce(key_name, model_permaslug) as name,
        sum(spend_usd) as spend_usd
    from period_spend
    group by grouping sets ((project, period, key_name), (project, period, model_permaslug))
),

ranked as (
    select
        *,
        row_number() over (partition by project, period, dimension order by spend_usd desc, name) as position
    from contributions
),

contributor_lists as (
    select
        project,
        period,
        list({'dimension': dimension, 'name': name, 'spend_usd': round(spend_usd, 2)}
             order by dimension, position) as items
    from ranked
    where position <= case dimension when 'key' then 3 else 2 end
    group by project, period
),

final as (
    select
        'budget_threshold' as rule_id,
        params.day as usage_date,
        'project=' || crossed.project || '|period=' || crossed.period
            || case when crossed.period = 'daily' then '' else '|start=' || crossed.period_start end
            as segment_key,
        crossed.project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        crossed.period || '_budget_used_ratio' as metric,
        crossed.used_ratio as observed_value,
        1.0 as expected_value,
        crossed.level as threshold_value,
        greatest(
            crossed.period_spend_usd - crossed.effective_budget_usd,
            coalesce(crossed.forecast_usd - crossed.effective_budget_usd, 0),
            0
        ) as impact_usd,
        crossed.period_start as window_start,
        params.day as window_end,
        null::date as baseline_start,
        null::date as baseline_end,
        null::integer as history_days,
        case
            when crossed.level >= params.critical_level and list_contains(params.critical_periods, crossed.period)
                then 'critical'
            else 'warning'
        end as severity,
        coalesce(to_json(contributor_lists.items), '[]'::json) as contributors,
        to_json({
            'period': crossed.period,
            'period_start': crossed.period_start,
            'spend_usd': round(crossed.period_spend_usd, 2),
            'budget_usd': round(crossed.budget_usd, 2),
            'effective_budget_usd': round(crossed.effective_budget_usd, 2),
            'budget_multiplier': round(crossed.effective_budget_usd / nullif(crossed.budget_usd, 0), 3),
            'level': crossed.level,
            'forecast_month_end_usd': round(crossed.forecast_usd, 2)
        }) as facts
    from crossed
    cross join params
    left join contributor_lists using (project, period)
    where crossed.level is not null
)

select * from final
