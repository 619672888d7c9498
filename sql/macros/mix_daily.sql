-- marts.mix_daily(dimension): how each project's spend and requests split over one dimension of
-- fct_daily_spend ('provider_name' or 'model_permaslug'), as shares and in dollars, against the 7 days before.
-- Grain: usage_date × project × mix_key (project '*' = whole account; mix_key = the dimension's value).
-- Upstream: marts.fct_daily_spend (the days in getvariable('mart_days') and the 7 days before each).
-- Shares are NULL when the denominator is 0 (for example a project that used only free models).
-- prior_7d_spend_share pools the previous 7 days (spend-weighted), so drift = today's share minus it. A value
-- that served the project in the previous 7 days but not today gets a row with zero spend.
-- Dollars: spend_shift_7d_usd = the share drift × the project's spend today (what moved, at today's volume,
-- so a $0.03 project cannot top a ranking of drift); spend_change_7d_usd = today's spend minus the value's
-- average day of the previous 7 (volume and mix together).
create or replace macro marts.mix_daily(dimension) as table
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(7)
),

spend as (
    select usage_date, project, columns(dimension) as mix_key, spend_usd, byok_spend_usd, total_spend_usd, requests
    from marts.fct_daily_spend
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
),

-- Each project and the account ('*') in one pass.
mix as (
    select
        usage_date,
        case when grouping(project) = 1 then '*' else project end as project,
        mix_key,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(byok_spend_usd) as byok_spend_usd,
        marts.exact_sum(total_spend_usd) as total_spend_usd,
        sum(requests) as requests
    from spend
    group by grouping sets ((usage_date, project, mix_key), (usage_date, mix_key))
),

shares as (
    select
        *,
        spend_usd / nullif(marts.exact_sum(spend_usd) over same_day, 0) as spend_share,
        total_spend_usd / nullif(marts.exact_sum(total_spend_usd) over same_day, 0) as total_spend_share,
        requests / nullif(sum(requests) over same_day, 0) as request_share
    from mix
    window same_day as (partition by usage_date, project)
),

project_spend as (
    select usage_date, project, marts.exact_sum(spend_usd) as project_spend_usd
    from mix
    group by usage_date, project
),

prior_week as (
    select
        build_days.usage_date,
        mix.project,
        mix.mix_key,
        marts.exact_sum(mix.spend_usd) as value_spend_usd
    from build_days
    inner join mix
        on mix.usage_date between build_days.usage_date - interval 7 day and build_days.usage_date - interval 1 day
    group by build_days.usage_date, mix.project, mix.mix_key
),

prior_week_totals as (
    select
        build_days.usage_date,
        project_spend.project,
        marts.exact_sum(project_spend.project_spend_usd) as project_spend_usd
    from build_days
    inner join project_spend
        on project_spend.usage_date between build_days.usage_date - interval 7 day
        and build_days.usage_date - interval 1 day
    group by build_days.usage_date, project_spend.project
),

-- Today's values plus those that served an active project in the previous 7 days but not today.
candidates as (
    select usage_date, project, mix_key from shares semi join build_days using (usage_date)
    union
    select prior_mix.usage_date, prior_mix.project, prior_mix.mix_key
    from prior_week as prior_mix
    semi join project_spend using (usage_date, project)
),

final as (
    select
        ---------- keys
        candidates.usage_date,
        candidates.project,
        candidates.mix_key,
        ---------- the day
        coalesce(shares.spend_usd, 0) as spend_usd,
        coalesce(shares.byok_spend_usd, 0) as byok_spend_usd,
        coalesce(shares.total_spend_usd, 0) as total_spend_usd,
        coalesce(shares.requests, 0) as requests,
        coalesce(shares.spend_share, case when today.project_spend_usd > 0 then 0 end) as spend_share,
        coalesce(shares.total_spend_share, 0) as total_spend_share,
        coalesce(shares.request_share, 0) as request_share,
        ---------- drift against the previous 7 days, in points and in dollars
        case
            when totals.project_spend_usd > 0 then coalesce(prior_mix.value_spend_usd, 0) / totals.project_spend_usd
        end as prior_7d_spend_share,
        coalesce(shares.spend_share, case when today.project_spend_usd > 0 then 0 end)
            - prior_7d_spend_share as spend_share_change_7d,
        spend_share_change_7d * today.project_spend_usd as spend_shift_7d_usd,
        coalesce(prior_mix.value_spend_usd, 0) / 7 as prior_7d_avg_spend_usd,
        coalesce(shares.spend_usd, 0) - coalesce(prior_mix.value_spend_usd, 0) / 7 as spend_change_7d_usd
    from candidates
    left join shares using (usage_date, project, mix_key)
    left join project_spend as today using (usage_date, project)
    left join prior_week as prior_mix using (usage_date, project, mix_key)
    left join prior_week_totals as totals using (usage_date, project)
)

select * from final
