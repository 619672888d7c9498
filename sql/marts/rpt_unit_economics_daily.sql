-- rpt_unit_economics_daily: what a request, a token and a premium dollar cost, per project and for the
-- whole account (project '*'), with provider concentration and the premium share against its baseline.
-- Grain: usage_date × project. Key: the same two columns.
-- Upstream: marts.fct_daily_spend (the day and the 28 days before it), marts.fct_provider_mix_daily,
--   marts.rpt_key_usage_daily (wasted spend).
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- premium_spend_share_baseline_28d pools the previous 28 days (spend-weighted). Per-request columns
-- (fallback_request_share, generation_coverage_share, accepted_results, cost_per_accepted_result_usd)
-- stay NULL until per-request data is loaded: unknown, not zero.
with
build_days as (
    select unnest(getvariable('mart_days')) as usage_date
),

bounds as (
    select min(usage_date) - interval 28 day as first_day, max(usage_date) as last_day from build_days
),

spend as (
    select * from marts.fct_daily_spend
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
),

by_project as (
    select
        usage_date,
        project,
        any_value(team) as team,
        any_value(budget_owner) as budget_owner,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(byok_spend_usd) as byok_spend_usd,
        marts.exact_sum(total_spend_usd) as total_spend_usd,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(cached_tokens) as cached_tokens,
        coalesce(marts.exact_sum(case when is_premium then spend_usd end), 0) as premium_spend_usd,
        coalesce(marts.exact_sum(case when not is_owned then spend_usd end), 0) as unowned_spend_usd,
        count(distinct api_key_hash) as active_keys
    from spend
    group by usage_date, project
),

by_account as (
    select
        usage_date,
        '*' as project,
        null as team,
        null as budget_owner,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(byok_spend_usd) as byok_spend_usd,
        marts.exact_sum(total_spend_usd) as total_spend_usd,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(cached_tokens) as cached_tokens,
        coalesce(marts.exact_sum(case when is_premium then spend_usd end), 0) as premium_spend_usd,
        coalesce(marts.exact_sum(case when not is_owned then spend_usd end), 0) as unowned_spend_usd,
        count(distinct api_key_hash) as active_keys
    from spend
    group by usage_date
),

economics as (
    select * from by_project
    union all by name
    select * from by_account
),

premium_baseline as (
    select
        build_days.usage_date,
        economics.project,
        marts.exact_sum(economics.premium_spend_usd) / nullif(marts.exact_sum(economics.spend_usd), 0)
            as premium_spend_share_baseline_28d
    from build_days
    inner join economics
        on economics.usage_date between build_days.usage_date - interval 28 day
        and build_days.usage_date - interval 1 day
    group by build_days.usage_date, economics.project
),

concentration as (
    select
        usage_date,
        project,
        arg_max(provider_name, spend_share) as top_provider_name,
        max(spend_share) as top_provider_spend_share,
        marts.exact_sum(spend_share * spend_share) as provider_hhi
    from marts.fct_provider_mix_daily
    semi join build_days using (usage_date)
    where spend_share is not null
    group by usage_date, project
),

waste as (
    select usage_date, project, marts.exact_sum(wasted_spend_usd) as wasted_spend_usd
    from marts.rpt_key_usage_daily
    semi join build_days using (usage_date)
    group by usage_date, project
    union all
    select usage_date, '*' as project, marts.exact_sum(wasted_spend_usd) as wasted_spend_usd
    from marts.rpt_key_usage_daily
    semi join build_days using (usage_date)
    group by usage_date
),

final as (
    select
        ---------- keys
        economics.usage_date,
        economics.project,
        economics.team,
        economics.budget_owner,
        ---------- money (USD) and volumes
        economics.spend_usd,
        economics.byok_spend_usd,
        economics.total_spend_usd,
        economics.requests,
        economics.prompt_tokens,
        economics.completion_tokens,
        economics.reasoning_tokens,
        economics.cached_tokens,
        economics.prompt_tokens + economics.completion_tokens as total_tokens,
        ---------- unit costs
        economics.spend_usd / nullif(economics.requests, 0) as cost_per_request_usd,
        1000 * economics.spend_usd / nullif(economics.prompt_tokens + economics.completion_tokens, 0)
            as cost_per_1k_tokens_usd,
        (economics.prompt_tokens + economics.completion_tokens) / nullif(economics.requests, 0)
            as tokens_per_request,
        ---------- premium share
        coalesce(economics.premium_spend_usd, 0) as premium_spend_usd,
        coalesce(economics.premium_spend_usd, 0) / nullif(economics.spend_usd, 0) as premium_spend_share,
        baseline.premium_spend_share_baseline_28d,
        coalesce(economics.premium_spend_usd, 0) / nullif(economics.spend_usd, 0)
            - baseline.premium_spend_share_baseline_28d as premium_spend_share_change,
        ---------- ownership, waste, keys
        coalesce(economics.unowned_spend_usd, 0) as unowned_spend_usd,
        coalesce(waste.wasted_spend_usd, 0) as wasted_spend_usd,
        economics.active_keys,
        ---------- provider concentration
        concentration.top_provider_name,
        concentration.top_provider_spend_share,
        concentration.provider_hhi,
        ---------- per-request signals (NULL until per-request data exists)
        null::double as fallback_request_share,
        null::double as generation_coverage_share,
        null::bigint as accepted_results,
        null::double as cost_per_accepted_result_usd
    from economics
    left join premium_baseline as baseline using (usage_date, project)
    left join concentration using (usage_date, project)
    left join waste using (usage_date, project)
    semi join build_days using (usage_date)
)

select * from final
