-- rpt_unit_economics_daily: what a request, a token and a premium dollar cost, per project and for the
-- whole account (project '*'), with provider concentration and the premium share against its baseline.
-- Grain: usage_date × project. Key: the same two columns.
-- Upstream: marts.fct_daily_spend (the day and the 28 days before it), marts.fct_provider_mix_daily,
--   marts.rpt_key_usage_daily (wasted spend), marts.fct_generations (the day's logged requests).
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- premium_spend_share_baseline_28d pools the previous 28 days (spend-weighted). Per-request columns are NULL
-- (unknown, never 0) for a project that logged no requests that day: generation_coverage_share = cost of the
-- logged requests ÷ spend (at most 1); accepted_results counts accepted logged requests (NULL without
-- verdicts); cost_per_accepted_result_usd = cost of the logged requests ÷ accepted results (same requests,
-- so partial coverage does not inflate it); fallback_request_share is estimated over the classified logged
-- requests with the stratified ratio estimator and 95% Wilson interval of fct_fallback_daily, the logged
-- requests taken as a sample of the segment's traffic ('census' only when every request was logged and
-- classified).
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(28)
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

generations as (
    select * from marts.fct_generations
    semi join build_days using (usage_date)
),

generation_strata as (
    select usage_date, sampling_stratum, count(*) as stratum_requests, count(sampling_weight) as stratum_classified
    from generations
    group by usage_date, sampling_stratum
),

-- Every logged request counts for its project and for the account ('*').
segment_generations as (
    select *, project as segment from generations
    union all
    select *, '*' as segment from generations
),

per_request as (
    select
        usage_date,
        segment as project,
        count(*) as per_request_requests,
        marts.exact_sum(cost_usd) as per_request_spend_usd,
        count(is_accepted) as judged_results,
        count(*) filter (where is_accepted) as accepted_results
    from segment_generations
    group by usage_date, segment
),

fallback_units as (
    select
        segment_generations.*,
        strata.stratum_requests,
        strata.stratum_classified,
        case when segment_generations.is_fallback then 1.0 else 0.0 end as y
    from segment_generations
    inner join generation_strata as strata using (usage_date, sampling_stratum)
    where segment_generations.sampling_weight is not null
),

fallback_segments as (
    select
        usage_date,
        segment as project,
        marts.exact_sum(sampling_weight) as weighted_requests,
        marts.exact_sum(sampling_weight * y) / marts.exact_sum(sampling_weight) as share,
        bool_and(stratum_classified = stratum_requests) as is_census,
        count(*) filter (where stratum_classified < stratum_requests) as sampled_requests
    from fallback_units
    group by usage_date, segment
),

fallback_variances as (
    select
        segment_strata.usage_date,
        segment_strata.project,
        marts.exact_sum(
            (1 - segment_strata.stratum_classified / segment_strata.stratum_requests)
            * segment_strata.stratum_requests * segment_strata.stratum_requests / segment_strata.stratum_classified
            * (
                (segment_strata.fallbacks * (1 - segments.share) ^ 2
                    + (segment_strata.requests - segment_strata.fallbacks) * segments.share ^ 2)
                - (segment_strata.fallbacks - segments.share * segment_strata.requests) ^ 2
                    / segment_strata.stratum_classified
              ) / greatest(segment_strata.stratum_classified - 1, 1)
        ) / (any_value(segments.weighted_requests) * any_value(segments.weighted_requests)) as share_variance
    from (
        select
            usage_date,
            segment as project,
            sampling_stratum,
            any_value(stratum_requests) as stratum_requests,
            any_value(stratum_classified) as stratum_classified,
            sum(y) as fallbacks,
            count(*) as requests
        from fallback_units
        group by usage_date, segment, sampling_stratum
    ) as segment_strata
    inner join fallback_segments as segments using (usage_date, project)
    group by segment_strata.usage_date, segment_strata.project
),

fallback_estimates as (
    select
        segments.usage_date,
        segments.project,
        segments.share,
        segments.is_census,
        case
            when segments.is_census then null
            when variances.share_variance > 0
                then segments.share * (1 - segments.share) / variances.share_variance
            else segments.sampled_requests
        end as classification_sample_size
    from fallback_segments as segments
    inner join fallback_variances as variances using (usage_date, project)
),

-- The logged requests are a sample of the segment's traffic too (coverage = logged ÷ requests): as in
-- fct_fallback_daily, (1 - coverage) / logged adds to the variance, and only full coverage is a census.
fallbacks as (
    select
        estimates.usage_date,
        estimates.project,
        estimates.share,
        estimates.is_census and coalesce(coverage.coverage_share >= 1, false) as is_census,
        case when not (estimates.is_census and coalesce(coverage.coverage_share >= 1, false)) then 1 / (
            coalesce(1 / estimates.classification_sample_size, 0)
            + coalesce((1 - coalesce(coverage.coverage_share, 0)) / coverage.logged_requests, 0)
        ) end as effective_sample_size
    from fallback_estimates as estimates
    left join (
        select
            per_request.usage_date,
            per_request.project,
            per_request.per_request_requests as logged_requests,
            case when economics.requests > 0
                then least(1.0, per_request.per_request_requests / economics.requests) end as coverage_share
        from per_request
        left join economics using (usage_date, project)
    ) as coverage using (usage_date, project)
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
        ---------- per-request signals (NULL, unknown, where the project logged no requests)
        fallbacks.share as fallback_request_share,
        case when fallbacks.is_census then fallbacks.share
            else marts.wilson_bound(fallbacks.share, fallbacks.effective_sample_size, 1.96, -1) end
            as fallback_request_share_ci_low,
        case when fallbacks.is_census then fallbacks.share
            else marts.wilson_bound(fallbacks.share, fallbacks.effective_sample_size, 1.96, 1) end
            as fallback_request_share_ci_high,
        case when fallbacks.is_census then 'census' when fallbacks.share is not null then 'sample' end
            as fallback_estimate_method,
        -- least() skips NULLs, so the cap applies only where there is per-request data.
        case when per_request.per_request_spend_usd is not null
            then least(per_request.per_request_spend_usd / nullif(economics.spend_usd, 0), 1.0) end
            as generation_coverage_share,
        case when per_request.judged_results > 0 then per_request.accepted_results end as accepted_results,
        case when per_request.judged_results > 0
            then per_request.per_request_spend_usd / nullif(per_request.accepted_results, 0) end
            as cost_per_accepted_result_usd,
        per_request.per_request_requests,
        per_request.per_request_spend_usd
    from economics
    left join premium_baseline as baseline using (usage_date, project)
    left join concentration using (usage_date, project)
    left join waste using (usage_date, project)
    left join per_request using (usage_date, project)
    left join fallbacks using (usage_date, project)
    semi join build_days using (usage_date)
)

select * from final
