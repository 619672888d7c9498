-- fct_fallback_daily: how often each project's workflows were served only after a provider, model or BYOK
-- key failed, what those requests cost and what they cost beyond the requested model's price.
-- Grain: usage_date × project × workflow (workflow '(none)' when the log names none). Key: the same three.
-- Upstream: marts.fct_generations (the day), marts.fct_daily_spend (the project's requests that day).
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- Only workflows with at least one classified request (is_fallback known) have a row; requests counts every
-- logged request of the workflow. Estimation in two phases. (1) Within the logged requests, each classified
-- request stands for sampling_weight logged requests of its stratum (metadata strata are observed in full,
-- weight 1); fallback_share is the weighted share (a ratio estimator) with the stratified linearised
-- variance Σ_h (1 - n_h/N_h) N_h² s²_h / n_h. (2) The logged requests are taken as a simple random sample of
-- the project's traffic (fct_daily_spend requests): request_coverage_share = the project's logged requests
-- (of the workflows with a row) ÷ its requests, adding (1 - coverage) p(1 - p) / logged to the variance.
-- The 95% interval is a Wilson interval on the effective sample size p(1 - p) / Var. estimate_method
-- 'census' only when every request of the project was logged and classified (the interval is the point),
-- else 'sample' (also when the project's traffic is unknown: the logged requests are then judged as trials).
-- Counts and money are first estimates for the logged requests: fallback_requests = round(share × requests);
-- fallback_extra_cost_usd = Σ weight × (actual cost − the same tokens at the requested model's price that
-- day); the traffic_* columns scale them to the project's traffic (÷ coverage), the figures the digest and
-- the rules show.
with
build_days as (
    select usage_date from marts.build_days()
),

generations as (
    select
        *,
        coalesce(workflow, '(none)') as workflow_key,
        (is_provider_fallback or is_model_fallback or is_byok_fallback) is not null as is_classified
    from marts.fct_generations
    semi join build_days using (usage_date)
),

strata as (
    select
        usage_date,
        sampling_stratum,
        count(*) as stratum_requests,
        count(*) filter (where is_classified) as stratum_classified
    from generations
    group by usage_date, sampling_stratum
),

units as (
    select
        generations.*,
        strata.stratum_requests,
        strata.stratum_classified,
        case when generations.is_fallback then 1.0 else 0.0 end as y
    from generations
    inner join strata using (usage_date, sampling_stratum)
    where generations.is_classified
),

domains as (
    select
        usage_date,
        project,
        workflow_key as workflow,
        marts.exact_sum(sampling_weight) as weighted_requests,
        marts.exact_sum(sampling_weight * y) / marts.exact_sum(sampling_weight) as share,
        marts.exact_sum(sampling_weight * case when is_provider_fallback then 1 else 0 end)
            / marts.exact_sum(sampling_weight) as provider_share,
        marts.exact_sum(sampling_weight * case when is_model_fallback then 1 else 0 end)
            / marts.exact_sum(sampling_weight) as model_share,
        marts.exact_sum(sampling_weight * case when is_byok_fallback then 1 else 0 end)
            / marts.exact_sum(sampling_weight) as byok_share,
        count(*) as classified_requests,
        bool_and(stratum_classified = stratum_requests) as is_census,
        count(*) filter (where stratum_classified < stratum_requests) as sampled_requests,
        marts.exact_sum(sampling_weight * case when is_fallback and cost_source in ('generation', 'log_usage')
            then cost_usd end) as fallback_spend_usd,
        marts.exact_sum(sampling_weight * fallback_extra_cost_usd) as fallback_extra_cost_usd
    from units
    group by usage_date, project, workflow_key
),

-- Per domain and stratum: the sums the linearised variance of a ratio needs (y is 0/1).
domain_strata as (
    select
        units.usage_date,
        units.project,
        units.workflow_key as workflow,
        units.sampling_stratum,
        any_value(units.stratum_requests) as stratum_requests,
        any_value(units.stratum_classified) as stratum_classified,
        sum(units.y) as fallbacks,
        count(*) as requests
    from units
    group by all
),

variances as (
    select
        domain_strata.usage_date,
        domain_strata.project,
        domain_strata.workflow,
        marts.exact_sum(
            (1 - domain_strata.stratum_classified / domain_strata.stratum_requests)
            * domain_strata.stratum_requests * domain_strata.stratum_requests / domain_strata.stratum_classified
            * (
                (domain_strata.fallbacks * (1 - domains.share) ^ 2
                    + (domain_strata.requests - domain_strata.fallbacks) * domains.share ^ 2)
                - (domain_strata.fallbacks - domains.share * domain_strata.requests) ^ 2
                / domain_strata.stratum_classified
              ) / greatest(domain_strata.stratum_classified - 1, 1)
        ) / (any_value(domains.weighted_requests) * any_value(domains.weighted_requests)) as share_variance
    from domain_strata
    inner join domains using (usage_date, project, workflow)
    group by domain_strata.usage_date, domain_strata.project, domain_strata.workflow
),

logged as (
    select
        usage_date,
        project,
        workflow_key as workflow,
        count(*) as requests,
        marts.exact_sum(cost_usd) as spend_usd
    from generations
    group by usage_date, project, workflow_key
),

traffic as (
    select usage_date, project, sum(requests) as traffic_requests
    from marts.fct_daily_spend
    semi join build_days using (usage_date)
    group by usage_date, project
),

-- Over the workflows that have a row (at least one classified request): their logged requests stand for
-- the project's whole traffic, so the traffic_* columns of a project add up to its requests.
coverage as (
    select
        logged.usage_date,
        logged.project,
        -- least() skips NULLs: an unknown traffic must keep the coverage unknown, not make it 1
        case when any_value(traffic.traffic_requests) > 0
            then least(1.0, sum(logged.requests) / any_value(traffic.traffic_requests)) end as coverage_share
    from logged
    semi join domains on domains.usage_date = logged.usage_date and domains.project = logged.project
        and domains.workflow = logged.workflow
    left join traffic using (usage_date, project)
    group by logged.usage_date, logged.project
),

estimated as (
    select
        domains.*,
        logged.requests,
        logged.spend_usd,
        coverage.coverage_share,
        -- a census needs the project's traffic known and all logged; unknown traffic is a sample of its own
        domains.is_census and coalesce(coverage.coverage_share >= 1, false) as is_full_census,
        greatest(variances.share_variance, 0) as share_variance,
        -- Phase 2 (classification within the logged requests) as an effective sample size, NULL when every
        -- logged request was classified; phase 1 (logging) as (1 - coverage) / logged requests.
        case
            when domains.is_census then null
            when variances.share_variance > 0 then domains.share * (1 - domains.share) / variances.share_variance
            else domains.sampled_requests
        end as classification_sample_size
    from domains
    inner join logged using (usage_date, project, workflow)
    inner join variances using (usage_date, project, workflow)
    left join coverage using (usage_date, project)
),

combined as (
    select
        *,
        case when not is_full_census then 1 / (
            coalesce(1 / classification_sample_size, 0)
            + (1 - coalesce(coverage_share, 0)) / requests
        ) end as effective_sample_size
    from estimated
),

final as (
    select
        ---------- keys
        usage_date,
        project,
        workflow,
        ---------- volumes
        requests,
        classified_requests,
        cast(round(share * requests) as bigint) as fallback_requests,
        cast(round(provider_share * requests) as bigint) as provider_fallback_requests,
        cast(round(model_share * requests) as bigint) as model_fallback_requests,
        cast(round(byok_share * requests) as bigint) as byok_fallback_requests,
        ---------- share and its 95% interval
        share as fallback_share,
        case when is_full_census then share else marts.wilson_bound(share, effective_sample_size, 1.96, -1) end
            as fallback_share_ci_low,
        case when is_full_census then share else marts.wilson_bound(share, effective_sample_size, 1.96, 1) end
            as fallback_share_ci_high,
        case when is_full_census then 'census' else 'sample' end as estimate_method,
        ---------- money (USD) of the logged requests
        spend_usd,
        coalesce(fallback_spend_usd, 0) as fallback_spend_usd,
        coalesce(fallback_extra_cost_usd, 0) as fallback_extra_cost_usd,
        ---------- scaled to the project's traffic (÷ coverage; the logged figures when coverage is unknown)
        coverage_share as request_coverage_share,
        cast(round(requests / coalesce(coverage_share, 1)) as bigint) as traffic_requests,
        cast(round(share * requests / coalesce(coverage_share, 1)) as bigint) as traffic_fallback_requests,
        coalesce(fallback_spend_usd, 0) / coalesce(coverage_share, 1) as traffic_fallback_spend_usd,
        coalesce(fallback_extra_cost_usd, 0) / coalesce(coverage_share, 1) as traffic_fallback_extra_cost_usd
    from combined
)

select * from final
