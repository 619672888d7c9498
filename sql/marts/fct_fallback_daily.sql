-- fct_fallback_daily: how often each project's workflows were served only after a provider, model or BYOK
-- key failed, what those requests cost and what they cost beyond the requested model's price.
-- Grain: usage_date × project × workflow (workflow '(none)' when the log names none). Key: the same three.
-- Upstream: marts.fct_generations (the day).
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- Only workflows with at least one classified request (is_fallback known) have a row; requests counts every
-- logged request of the workflow. Estimation: each classified request stands for sampling_weight logged
-- requests of its stratum (metadata strata are observed in full, weight 1). fallback_share is the weighted
-- share (a ratio estimator); its 95% interval is a Wilson interval on the effective sample size
-- p(1 - p) / Var, with Var from the stratified linearised variance Σ_h (1 - n_h/N_h) N_h² s²_h / n_h.
-- estimate_method 'census' (every request classified: the interval is the point) or 'sample'. Counts and
-- money are estimates for all logged requests: fallback_requests = round(share × requests);
-- fallback_extra_cost_usd = Σ weight × (actual cost − the same tokens at the requested model's price that day).
with
build_days as (
    select unnest(getvariable('mart_days')) as usage_date
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
                - (domain_strata.fallbacks - domains.share * domain_strata.requests) ^ 2 / domain_strata.stratum_classified
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

estimated as (
    select
        domains.*,
        logged.requests,
        logged.spend_usd,
        greatest(variances.share_variance, 0) as share_variance,
        case
            when domains.is_census then null
            when variances.share_variance > 0 then domains.share * (1 - domains.share) / variances.share_variance
            else domains.sampled_requests
        end as effective_sample_size
    from domains
    inner join logged using (usage_date, project, workflow)
    inner join variances using (usage_date, project, workflow)
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
        case when is_census then share else marts.wilson_bound(share, effective_sample_size, 1.96, -1) end
            as fallback_share_ci_low,
        case when is_census then share else marts.wilson_bound(share, effective_sample_size, 1.96, 1) end
            as fallback_share_ci_high,
        case when is_census then 'census' else 'sample' end as estimate_method,
        ---------- money (USD)
        spend_usd,
        coalesce(fallback_spend_usd, 0) as fallback_spend_usd,
        coalesce(fallback_extra_cost_usd, 0) as fallback_extra_cost_usd
    from estimated
)

select * from final
