-- rpt_key_usage_daily: each key's day against its own recent past, with an estimate of wasted requests.
-- Grain: usage_date × api_key_hash. Key: the same two columns.
-- Upstream: marts.fct_daily_spend (the day and the 7 days before it), marts.fct_generations (the day).
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- Waste from request logs (waste_method 'per_request'), when the key logged classified requests that day:
-- wasted requests = requests × the weighted share of logged requests that were failed, cancelled, retries
-- or duplicates (fct_generations.is_wasted, weighted by sampling_weight); wasted spend uses their cost share.
-- Otherwise, or when the aggregate estimate below finds more (a request-log sample of a few requests can
-- understate a loop its aggregate shape shows plainly), the aggregate estimate (waste_method
-- 'aggregate_estimate'). wasted_spend_usd is the one waste figure of a key and day: rpt_spend_change,
-- rpt_unit_economics_daily, the digest and the runaway_usage rule all read it.
-- A per-request figure is a sample of the key's traffic: per_request_coverage_share = logged ÷ requests,
-- and wasted_spend_ci_low/high_usd is its 95% interval (Wilson on the wasted share of the logged requests,
-- the logged requests taken as a simple random sample of the day's, finite-population corrected; the
-- point when every request was logged). The aggregate estimate is a model, not a sample: no interval.
-- Waste (aggregate estimate, per key × model): a loop or duplicate job shows as many more requests than
-- usual that produce far less output each. Baselines are medians over the key-model's active days among
-- the previous 7, so a loop of a day or two does not poison them. When requests exceed 1.5× the median
-- daily requests AND completion tokens per request fall below half the median, the requests the output
-- can explain (completion tokens ÷ median tokens per request) are useful and the rest are wasted.
-- Embeddings (no completion tokens) and key-models without a baseline are never waste.
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(7)
),

key_models as (
    select
        usage_date,
        api_key_hash,
        model_permaslug,
        any_value(api_key_name) as api_key_name,
        any_value(project) as project,
        bool_or(is_owned) as is_owned,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        marts.exact_sum(spend_usd) as spend_usd
    from marts.fct_daily_spend
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
    group by usage_date, api_key_hash, model_permaslug
),

with_baseline as (
    select
        *,
        median(requests) over prior_week as baseline_daily_requests,
        median(completion_tokens / nullif(requests, 0)) over prior_week as baseline_tokens_per_request
    from key_models
    window prior_week as (
        partition by api_key_hash, model_permaslug
        order by usage_date
        range between interval 7 day preceding and interval 1 day preceding
    )
),

estimated as (
    select
        *,
        coalesce(
            baseline_tokens_per_request > 0
            and requests > 1.5 * baseline_daily_requests
            and completion_tokens < 0.5 * baseline_tokens_per_request * requests,
            false
        ) as is_loop_shaped
    from with_baseline
),

with_waste as (
    select
        *,
        case
            when is_loop_shaped
                then requests - least(requests, greatest(1, completion_tokens / baseline_tokens_per_request))
            else 0
        end as wasted_requests
    from estimated
),

keys as (
    select
        usage_date,
        api_key_hash,
        any_value(api_key_name) as api_key_name,
        any_value(project) as project,
        bool_or(is_owned) as is_owned,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(baseline_daily_requests) as baseline_daily_requests,
        marts.exact_sum(baseline_tokens_per_request * baseline_daily_requests) as baseline_daily_completion_tokens,
        marts.exact_sum(wasted_requests) as wasted_requests,
        marts.exact_sum(spend_usd * wasted_requests / nullif(requests, 0)) as wasted_spend_usd,
        bool_or(is_loop_shaped) as is_loop_shaped
    from with_waste
    semi join build_days using (usage_date)
    group by usage_date, api_key_hash
),

per_request as (
    select
        usage_date,
        api_key_hash,
        count(*) as per_request_requests,
        marts.exact_sum(sampling_weight * case when is_wasted then 1 else 0 end)
            / nullif(marts.exact_sum(sampling_weight), 0) as wasted_request_share,
        marts.exact_sum(sampling_weight * case when is_wasted then cost_usd else 0 end)
            / nullif(marts.exact_sum(sampling_weight * cost_usd), 0) as wasted_cost_share
    from marts.fct_generations
    semi join build_days using (usage_date)
    where api_key_hash is not null
    group by usage_date, api_key_hash
),

key_waste as (
    select
        keys.*,
        per_request.* exclude (usage_date, api_key_hash),
        keys.spend_usd * coalesce(per_request.wasted_cost_share, per_request.wasted_request_share)
            as per_request_wasted_spend_usd,
        per_request.wasted_request_share is not null
            and keys.spend_usd * coalesce(per_request.wasted_cost_share, per_request.wasted_request_share)
                >= coalesce(keys.wasted_spend_usd, 0) as uses_request_log
    from keys
    left join per_request using (usage_date, api_key_hash)
),

sampled as (
    select
        *,
        case
            when not uses_request_log then null
            when per_request_requests >= requests then wasted_request_share
            else marts.wilson_bound(wasted_request_share,
                                    per_request_requests / (1 - per_request_requests / requests), 1.96, -1)
        end as interval_low,
        case
            when not uses_request_log then null
            when per_request_requests >= requests then wasted_request_share
            else marts.wilson_bound(wasted_request_share,
                                    per_request_requests / (1 - per_request_requests / requests), 1.96, 1)
        end as interval_high
    from key_waste
),

final as (
    select
        ---------- keys
        usage_date,
        api_key_hash,
        api_key_name,
        project,
        is_owned,
        ---------- the day
        requests,
        prompt_tokens,
        completion_tokens,
        spend_usd,
        ---------- against the previous 7 days
        baseline_daily_requests,
        requests / nullif(baseline_daily_requests, 0) as request_ratio,
        completion_tokens / nullif(requests, 0) as completion_tokens_per_request,
        baseline_daily_completion_tokens / nullif(baseline_daily_requests, 0)
            as baseline_completion_tokens_per_request,
        ---------- waste: counted from request logs where the key logs them, else estimated
        case when uses_request_log then keys.requests * keys.wasted_request_share
            else keys.wasted_requests
        end as wasted_requests,
        case when uses_request_log then per_request_wasted_spend_usd
            else coalesce(keys.wasted_spend_usd, 0)
        end as wasted_spend_usd,
        is_loop_shaped,
        case when uses_request_log then 'per_request' else 'aggregate_estimate' end as waste_method,
        keys.per_request_requests,
        case when keys.requests > 0
            then least(1.0, keys.per_request_requests / keys.requests) end as per_request_coverage_share,
        case when uses_request_log
            then coalesce(per_request_wasted_spend_usd * interval_low / nullif(wasted_request_share, 0), 0)
        end as wasted_spend_ci_low_usd,
        case
            when not uses_request_log then null
            when wasted_request_share > 0
                then least(keys.spend_usd, per_request_wasted_spend_usd * interval_high / wasted_request_share)
            else keys.spend_usd * interval_high
        end as wasted_spend_ci_high_usd
    from sampled as keys
)

select * from final
