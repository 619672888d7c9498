-- rpt_spend_change: how each project's spend moved day over day (D vs D-1) and week over week (D vs D-7,
-- the same weekday), split into volume, context, mix/price and waste effects that sum to the change.
-- Grain: usage_date × project (project '*' = whole account). Key: the same two columns.
-- Upstream: marts.rpt_key_usage_daily (spend, requests, tokens, wasted requests; the day, D-1 and D-7).
-- Partition: usage_date; builds the days in getvariable('mart_days').
--
-- Method: additive log-mean Divisia index (LMDI-I) on the identity
--     spend = useful requests × (requests / useful requests) × (tokens / request) × (spend / token)
--             volume           waste                           context              mix/price
-- with useful requests = requests - wasted requests and tokens = prompt + completion tokens. With
-- L = (S1 - S0) / (ln S1 - ln S0) (L = S1 when S1 = S0) each effect is L × ln(factor1 / factor0); the
-- logs of the factors sum to ln(S1 / S0), so the four effects add up to S1 - S0 exactly (up to float
-- rounding, about 1e-12 of the spend). LMDI needs every factor positive on both days: when either day
-- has no spend, no requests or no tokens, the whole change is reported as volume and
-- decomposition_method says 'volume_only'. When the prior day was never loaded the comparison is NULL.
with
build_days as (
    select unnest(getvariable('mart_days')) as usage_date
),

bounds as (
    select min(usage_date) - interval 7 day as first_day, max(usage_date) as last_day from build_days
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
        marts.exact_sum(requests - wasted_requests) as useful_requests
    from key_usage
    group by usage_date, project
    union all
    select
        usage_date,
        '*' as project,
        marts.exact_sum(spend_usd) as spend_usd,
        sum(requests) as requests,
        sum(prompt_tokens + completion_tokens) as tokens,
        marts.exact_sum(requests - wasted_requests) as useful_requests
    from key_usage
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
        coalesce(prior_day.spend_usd, 0) as spend_0,
        coalesce(prior_day.requests, 0) as requests_0,
        coalesce(prior_day.tokens, 0) as tokens_0,
        coalesce(prior_day.useful_requests, 0) as useful_0
    from pairs
    left join project_days as current_day
        on current_day.usage_date = pairs.usage_date and current_day.project = pairs.project
    left join project_days as prior_day
        on prior_day.usage_date = pairs.prior_date and prior_day.project = pairs.project
),

weighted as (
    select
        *,
        least(spend_0, spend_1, requests_0, requests_1, tokens_0, tokens_1, useful_0, useful_1) > 0
            as is_decomposable,
        case
            when spend_1 = spend_0 then spend_1
            when least(spend_0, spend_1) > 0 then (spend_1 - spend_0) / (ln(spend_1) - ln(spend_0))
        end as log_mean_weight
    from measured
),

decomposed as (
    select
        usage_date,
        comparison,
        project,
        spend_1,
        requests_1,
        case when is_prior_loaded then spend_0 end as prior_spend_usd,
        case when is_prior_loaded then spend_1 - spend_0 end as delta_usd,
        case
            when not is_prior_loaded then null
            when is_decomposable then log_mean_weight * ln(useful_1 / useful_0)
            else spend_1 - spend_0
        end as volume_effect_usd,
        case
            when not is_prior_loaded then null
            when is_decomposable then log_mean_weight * ln((tokens_1 / requests_1) / (tokens_0 / requests_0))
            else 0
        end as context_effect_usd,
        case
            when not is_prior_loaded then null
            when is_decomposable then log_mean_weight * ln((spend_1 / tokens_1) / (spend_0 / tokens_0))
            else 0
        end as mix_price_effect_usd,
        case
            when not is_prior_loaded then null
            when is_decomposable then log_mean_weight * ln((requests_1 / useful_1) / (requests_0 / useful_0))
            else 0
        end as waste_effect_usd,
        case
            when not is_prior_loaded then null
            when is_decomposable then 'lmdi'
            else 'volume_only'
        end as decomposition_method
    from weighted
),

final as (
    select
        ---------- keys
        usage_date,
        project,
        ---------- the day
        any_value(spend_1) as spend_usd,
        any_value(requests_1) as requests,
        ---------- day over day
        any_value(prior_spend_usd) filter (where comparison = 'day_over_day') as prior_spend_usd,
        any_value(delta_usd) filter (where comparison = 'day_over_day') as delta_usd,
        any_value(volume_effect_usd) filter (where comparison = 'day_over_day') as volume_effect_usd,
        any_value(context_effect_usd) filter (where comparison = 'day_over_day') as context_effect_usd,
        any_value(mix_price_effect_usd) filter (where comparison = 'day_over_day') as mix_price_effect_usd,
        any_value(waste_effect_usd) filter (where comparison = 'day_over_day') as waste_effect_usd,
        any_value(decomposition_method) filter (where comparison = 'day_over_day') as decomposition_method,
        ---------- week over week (same weekday)
        any_value(prior_spend_usd) filter (where comparison = 'week_over_week') as prior_week_spend_usd,
        any_value(delta_usd) filter (where comparison = 'week_over_week') as wow_delta_usd,
        any_value(volume_effect_usd) filter (where comparison = 'week_over_week') as wow_volume_effect_usd,
        any_value(context_effect_usd) filter (where comparison = 'week_over_week') as wow_context_effect_usd,
        any_value(mix_price_effect_usd) filter (where comparison = 'week_over_week') as wow_mix_price_effect_usd,
        any_value(waste_effect_usd) filter (where comparison = 'week_over_week') as wow_waste_effect_usd,
        any_value(decomposition_method) filter (where comparison = 'week_over_week') as wow_decomposition_method
    from decomposed
    group by usage_date, project
)

select * from final
