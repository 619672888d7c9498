-- rpt_budget_status_daily: each configured project's spend for the day, week to date and month to date
-- against its budgets, and a month-end forecast. The digest and the budget rule read this table.
-- Grain: usage_date × project (projects of the configuration in force that day). Key: the same two columns.
-- Upstream: marts.fct_daily_spend (from the month start, or 6 days earlier, to the day), config.projects,
--   config.launch_windows, config.config_versions.
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- Spend is OpenRouter credits (spend_usd); weeks start on Monday (UTC).
-- Launch windows: a day inside a window expects velocity_multiplier × the usual spend (overlapping
-- windows: the largest multiplier). Effective budgets scale by the multiplier of the day (daily) or by
-- the mean multiplier over the week's or month's days (weekly, monthly).
-- Forecast: run_rate_7d_usd = mean over the loaded days among the last 7 (the day included) of
-- spend ÷ multiplier, i.e. the usual velocity with launches factored out; then
-- forecast_month_end_spend_usd = month to date + run rate × Σ multiplier over the days left in the month.
with
build_days as (
    select usage_date from marts.build_days()
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

day_versions as (
    select
        build_days.usage_date,
        versions.config_version_id
    from build_days
    inner join config.config_versions as versions
        on build_days.usage_date >= versions.effective_from
        and (versions.effective_to is null or build_days.usage_date < versions.effective_to)
    semi join loaded_days using (usage_date)
),

status_rows as (
    select
        day_versions.usage_date,
        projects.*,
        cast(date_trunc('week', day_versions.usage_date) as date) as week_start,
        cast(date_trunc('month', day_versions.usage_date) as date) as month_start,
        last_day(day_versions.usage_date) as month_end
    from day_versions
    inner join config.projects as projects using (config_version_id)
),

bounds as (
    select min(least(week_start, month_start, usage_date - 6)) as first_day, max(usage_date) as last_day
    from status_rows
),

project_spend as (
    select usage_date as calendar_date, project, marts.exact_sum(spend_usd) as spend_usd
    from marts.fct_daily_spend
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
    group by usage_date, project
),

calendar as (
    select
        status_rows.usage_date,
        status_rows.project,
        status_rows.config_version_id,
        status_rows.week_start,
        status_rows.month_start,
        status_rows.month_end,
        cast(unnest(generate_series(
            least(status_rows.week_start, status_rows.month_start, status_rows.usage_date - 6),
            greatest(status_rows.week_start + 6, status_rows.month_end),
            interval 1 day
        )) as date) as calendar_date
    from status_rows
),

calendar_days as (
    select
        calendar.*,
        calendar.calendar_date in (select usage_date from loaded_days) as is_loaded,
        coalesce(project_spend.spend_usd, 0) as spend_usd,
        coalesce(max(windows.velocity_multiplier), 1.0) as multiplier
    from calendar
    left join project_spend using (calendar_date, project)
    left join config.launch_windows as windows
        on windows.config_version_id = calendar.config_version_id
        and windows.project = calendar.project
        and calendar.calendar_date between windows.start_date and windows.end_date
    group by all
),

measures as (
    select
        usage_date,
        project,
        any_value(month_end) - usage_date as days_left_in_month,
        marts.exact_sum(case when calendar_date = usage_date then spend_usd end) as spend_usd,
        marts.exact_sum(case when calendar_date between week_start and usage_date then spend_usd end)
            as week_to_date_spend_usd,
        marts.exact_sum(case when calendar_date between month_start and usage_date then spend_usd end)
            as month_to_date_spend_usd,
        max(multiplier) filter (where calendar_date = usage_date) as velocity_multiplier,
        marts.exact_sum(case when calendar_date between week_start and week_start + 6 then multiplier end) / 7
            as week_multiplier,
        marts.exact_sum(case when calendar_date between month_start and month_end then multiplier end)
            / day(any_value(month_end)) as month_multiplier,
        marts.exact_sum(case when calendar_date between usage_date - 6 and usage_date and is_loaded
                then spend_usd / multiplier end)
            / nullif(count(case when calendar_date between usage_date - 6 and usage_date and is_loaded then 1 end), 0)
            as run_rate_7d_usd,
        coalesce(marts.exact_sum(case when calendar_date > usage_date and calendar_date <= month_end
            then multiplier end), 0)
            as multiplier_days_left
    from calendar_days
    group by usage_date, project
),

final as (
    select
        ---------- keys
        status_rows.usage_date,
        status_rows.project,
        ---------- owner
        status_rows.team,
        status_rows.budget_owner,
        status_rows.budget_owner_contact,
        ---------- spend (USD of credits)
        measures.spend_usd,
        measures.week_to_date_spend_usd,
        measures.month_to_date_spend_usd,
        ---------- budgets
        measures.velocity_multiplier,
        status_rows.daily_budget_usd,
        status_rows.weekly_budget_usd,
        status_rows.monthly_budget_usd,
        status_rows.daily_budget_usd * measures.velocity_multiplier as effective_daily_budget_usd,
        status_rows.weekly_budget_usd * measures.week_multiplier as effective_weekly_budget_usd,
        status_rows.monthly_budget_usd * measures.month_multiplier as effective_monthly_budget_usd,
        measures.spend_usd / nullif(effective_daily_budget_usd, 0) as daily_budget_used_ratio,
        measures.week_to_date_spend_usd / nullif(effective_weekly_budget_usd, 0) as weekly_budget_used_ratio,
        measures.month_to_date_spend_usd / nullif(effective_monthly_budget_usd, 0) as monthly_budget_used_ratio,
        ---------- forecast
        measures.run_rate_7d_usd,
        measures.days_left_in_month,
        measures.month_to_date_spend_usd + measures.run_rate_7d_usd * measures.multiplier_days_left
            as forecast_month_end_spend_usd,
        forecast_month_end_spend_usd / nullif(effective_monthly_budget_usd, 0) as forecast_monthly_budget_ratio,
        ---------- lineage
        status_rows.config_version_id
    from status_rows
    inner join measures using (usage_date, project)
)

select * from final
