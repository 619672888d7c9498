-- rpt_spend_change: how each project's spend moved day over day (D vs D-1) and week over week (D vs D-7,
-- the same weekday), split into volume, context, mix/price and waste effects that sum to the change; the
-- account ('*') also names a shift of traffic between projects (project mix).
-- Grain: usage_date × project (project '*' = whole account). Key: the same two columns.
-- Upstream: marts.rpt_key_usage_daily (spend, requests, tokens, wasted requests and wasted spend; the day,
--   D-1 and D-7).
-- Partition: usage_date; builds the days in getvariable('mart_days').
--
-- Method. Spend = useful spend + wasted spend, where wasted spend is rpt_key_usage_daily.wasted_spend_usd,
-- the one waste figure of a key and day (the digest and the runaway rule show the same number): the waste
-- effect is the change of the wasted spend, W1 - W0, so it can never exceed the waste itself. The useful
-- spend is split with the additive log-mean Divisia index (LMDI-I) on
--     useful spend = useful requests × (tokens / request) × (useful spend / (useful requests × tokens / request))
--                    volume           context              mix/price (cost per token of the useful work)
-- with useful requests = requests - wasted requests and tokens = prompt + completion tokens. With
-- L = (S1 - S0) / (ln S1 - ln S0) on the useful spend (L = S1 when equal) each effect is L × ln(factor1 /
-- factor0); the logs add up to ln(S1 / S0), so volume + context + mix/price = S1 - S0 exactly (up to float
-- rounding, about 1e-12 of the spend). For the account the same terms are summed over projects, and each
-- project's volume term splits into the account's volume (L_p × ln(U1 / U0), U = the account's useful
-- requests) and the project-mix effect (L_p × ln(share1 / share0), share = the project's part of U): traffic
-- moving from an expensive project to a cheap one is a project-mix effect, not a price cut. Projects have no
-- project-mix effect (0). LMDI needs every factor positive on both days: otherwise the useful change is all
-- volume and decomposition_method says 'volume_only'. When the prior day was never loaded the comparison is
-- NULL.
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(7)
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

key_usage as (
    select * from marts.rpt_key_usage_daily
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
),

project_days as (
    select
        usage_date,
        project,
        marts.exact_sum(spend_usd) as spend_usd,
        sum(requests) as requests,
        sum(prompt_tokens + completion_tokens) as tokens,
        marts.exact_sum(requests - wasted_requests) as useful_requests,
        marts.exact_sum(wasted_spend_usd) as wasted_spend_usd
    from key_usage
    group by usage_date, project
),

account_days as (
    select usage_date, marts.exact_sum(useful_requests) as useful_requests
    from project_days
    group by usage_date
),

comparisons as (
    select
        build_days.usage_date,
        lags.comparison,
        build_days.usage_date - lags.lag_days as prior_date
    from build_days
    semi join loaded_days using (usage_date)
    cross join (values ('day_over_day', 1), ('week_over_week', 7)) as lags (comparison, lag_days)
),

-- Every project active on the day, the day before or the same weekday a week before gets both comparisons.
day_projects as (
    select distinct build_days.usage_date, project_days.project
    from build_days
    inner join project_days
        on project_days.usage_date in (build_days.usage_date, build_days.usage_date - 1, build_days.usage_date - 7)
),

pairs as (
    select comparisons.*, day_projects.project
    from comparisons
    inner join day_projects using (usage_date)
),

measured as (
    select
        pairs.usage_date,
        pairs.comparison,
        pairs.project,
        pairs.prior_date in (select usage_date from loaded_days) as is_prior_loaded,
        coalesce(current_day.spend_usd, 0) as spend_1,
        coalesce(current_day.requests, 0) as requests_1,
        coalesce(current_day.tokens, 0) as tokens_1,
        coalesce(current_day.useful_requests, 0) as useful_1,
        coalesce(current_day.wasted_spend_usd, 0) as waste_1,
        coalesce(current_account.useful_requests, 0) as account_useful_1,
        coalesce(prior_day.spend_usd, 0) as spend_0,
        coalesce(prior_day.requests, 0) as requests_0,
        coalesce(prior_day.tokens, 0) as tokens_0,
        coalesce(prior_day.useful_requests, 0) as useful_0,
        coalesce(prior_day.wasted_spend_usd, 0) as waste_0,
        coalesce(prior_account.useful_requests, 0) as account_useful_0
    from pairs
    left join project_days as current_day
        on current_day.usage_date = pairs.usage_date and current_day.project = pairs.project
    left join project_days as prior_day
        on prior_day.usage_date = pairs.prior_date and prior_day.project = pairs.project
    left join account_days as current_account on current_account.usage_date = pairs.usage_date
    left join account_days as prior_account on prior_account.usage_date = pairs.prior_date
),

useful as (
    select
        *,
        spend_1 - waste_1 as useful_spend_1,
        spend_0 - waste_0 as useful_spend_0
    from measured
),

weighted as (
    select
        *,
        least(useful_spend_0, useful_spend_1, requests_0, requests_1, tokens_0, tokens_1, useful_0, useful_1) > 0
            as is_decomposable,
        case
            when useful_spend_1 = useful_spend_0 then useful_spend_1
            when least(useful_spend_0, useful_spend_1) > 0
                then (useful_spend_1 - useful_spend_0) / (ln(useful_spend_1) - ln(useful_spend_0))
        end as log_mean_weight
    from useful
),

-- Per project and comparison: the LMDI terms, and the project's volume term split for the account.
decomposed as (
    select
        usage_date,
        comparison,
        project,
        is_prior_loaded,
        spend_1,
        spend_0,
        requests_1,
        waste_1,
        is_decomposable,
        waste_1 - waste_0 as waste_effect,
        case when is_decomposable then log_mean_weight * ln(useful_1 / useful_0)
            else useful_spend_1 - useful_spend_0 end as volume_effect,
        case when is_decomposable then log_mean_weight * ln(account_useful_1 / account_useful_0)
            else useful_spend_1 - useful_spend_0 end as account_volume_effect,
        case when is_decomposable
            then log_mean_weight * ln((useful_1 / account_useful_1) / (useful_0 / account_useful_0))
            else 0 end as project_mix_effect,
        case when is_decomposable then log_mean_weight * ln((tokens_1 / requests_1) / (tokens_0 / requests_0))
            else 0 end as context_effect,
        case when is_decomposable
            then log_mean_weight * ln(
                (useful_spend_1 / (useful_1 * tokens_1 / requests_1))
                / (useful_spend_0 / (useful_0 * tokens_0 / requests_0)))
            else 0 end as mix_price_effect
    from weighted
),

segments as (
    select
        usage_date,
        comparison,
        project,
        any_value(is_prior_loaded) as is_prior_loaded,
        any_value(spend_1) as spend_1,
        any_value(spend_0) as spend_0,
        any_value(requests_1) as requests_1,
        any_value(waste_1) as waste_1,
        any_value(volume_effect) as volume_effect,
        0.0 as project_mix_effect,
        any_value(context_effect) as context_effect,
        any_value(mix_price_effect) as mix_price_effect,
        any_value(waste_effect) as waste_effect,
        case when bool_or(is_decomposable) then 'lmdi' else 'volume_only' end as decomposition_method
    from decomposed
    group by usage_date, comparison, project
    union all
    select
        usage_date,
        comparison,
        '*' as project,
        bool_or(is_prior_loaded) as is_prior_loaded,
        marts.exact_sum(spend_1) as spend_1,
        marts.exact_sum(spend_0) as spend_0,
        sum(requests_1) as requests_1,
        marts.exact_sum(waste_1) as waste_1,
        marts.exact_sum(account_volume_effect) as volume_effect,
        marts.exact_sum(project_mix_effect) as project_mix_effect,
        marts.exact_sum(context_effect) as context_effect,
        marts.exact_sum(mix_price_effect) as mix_price_effect,
        marts.exact_sum(waste_effect) as waste_effect,
        case when bool_or(is_decomposable) then 'lmdi' else 'volume_only' end as decomposition_method
    from decomposed
    group by usage_date, comparison
),

compared as (
    select
        usage_date,
        comparison,
        project,
        spend_1,
        requests_1,
        waste_1,
        case when is_prior_loaded then spend_0 end as prior_spend_usd,
        case when is_prior_loaded then spend_1 - spend_0 end as delta_usd,
        case when is_prior_loaded then volume_effect end as volume_effect_usd,
        case when is_prior_loaded then project_mix_effect end as project_mix_effect_usd,
        case when is_prior_loaded then context_effect end as context_effect_usd,
        case when is_prior_loaded then mix_price_effect end as mix_price_effect_usd,
        case when is_prior_loaded then waste_effect end as waste_effect_usd,
        case when is_prior_loaded then decomposition_method end as decomposition_method
    from segments
),

final as (
    select
        ---------- keys
        usage_date,
        project,
        ---------- the day
        any_value(spend_1) as spend_usd,
        any_value(requests_1) as requests,
        any_value(waste_1) as wasted_spend_usd,
        ---------- day over day
        any_value(prior_spend_usd) filter (where comparison = 'day_over_day') as prior_spend_usd,
        any_value(delta_usd) filter (where comparison = 'day_over_day') as delta_usd,
        any_value(volume_effect_usd) filter (where comparison = 'day_over_day') as volume_effect_usd,
        any_value(project_mix_effect_usd) filter (where comparison = 'day_over_day') as project_mix_effect_usd,
        any_value(context_effect_usd) filter (where comparison = 'day_over_day') as context_effect_usd,
        any_value(mix_price_effect_usd) filter (where comparison = 'day_over_day') as mix_price_effect_usd,
        any_value(waste_effect_usd) filter (where comparison = 'day_over_day') as waste_effect_usd,
        any_value(decomposition_method) filter (where comparison = 'day_over_day') as decomposition_method,
        ---------- week over week (same weekday)
        any_value(prior_spend_usd) filter (where comparison = 'week_over_week') as prior_week_spend_usd,
        any_value(delta_usd) filter (where comparison = 'week_over_week') as wow_delta_usd,
        any_value(volume_effect_usd) filter (where comparison = 'week_over_week') as wow_volume_effect_usd,
        any_value(project_mix_effect_usd) filter (where comparison = 'week_over_week')
            as wow_project_mix_effect_usd,
        any_value(context_effect_usd) filter (where comparison = 'week_over_week') as wow_context_effect_usd,
        any_value(mix_price_effect_usd) filter (where comparison = 'week_over_week') as wow_mix_price_effect_usd,
        any_value(waste_effect_usd) filter (where comparison = 'week_over_week') as wow_waste_effect_usd,
        any_value(decomposition_method) filter (where comparison = 'week_over_week') as wow_decomposition_method
    from compared
    group by usage_date, project
)

select * from final
