-- runaway_usage: a key runs far more requests (or spends far more) than its norm while the results it
-- produces stay flat: a loop, a retry storm or a duplicated job, not growth.
-- Grain: one row per API key crossing the thresholds on the evaluated day. Segment: key.
-- Upstream: marts.fct_daily_spend, marts.fct_generations (accepted results, where per-request data exists),
--   staging.stg_loaded_days.
-- Parameters: alert_day, baseline_days, baseline_method, min_history_days, min_ratio, max_output_ratio,
--   min_requests, min_impact_usd.
-- Method: norms are the median (or mean) over the key's active days among the previous baseline_days days.
-- Results = accepted results when fct_generations has the key's acceptance verdicts for the day and its
-- norm (estimated: accepted share of the sampled generations × requests, from at least 30 verdicts), else
-- completion tokens (output).
-- Fires when requests or spend ≥ min_ratio × norm and results ≤ max_output_ratio × norm. Impact = spend
-- beyond what the day's results usually cost (spend − norm spend × results ratio).
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('baseline_method') as varchar) as baseline_method,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_ratio') as double) as min_ratio,
        cast(getvariable('max_output_ratio') as double) as max_output_ratio,
        cast(getvariable('min_requests') as bigint) as min_requests,
        cast(getvariable('min_impact_usd') as double) as min_impact_usd
),

loaded_days as (
    select usage_date from staging.stg_loaded_days
),

history as (
    select count(*) as history_days
    from loaded_days, params
    where usage_date between params.day - params.baseline_days and params.day - 1
),

key_days as (
    select
        spend.usage_date,
        spend.api_key_hash,
        any_value(spend.api_key_name) as api_key_name,
        any_value(spend.project) as project,
        marts.exact_sum(spend.spend_usd) as spend_usd,
        sum(spend.requests) as requests,
        sum(spend.completion_tokens) as completion_tokens,
        arg_max(spend.model, spend.requests) as top_model
    from marts.fct_daily_spend as spend, params
    where spend.usage_date between params.day - params.baseline_days and params.day
    group by spend.usage_date, spend.api_key_hash
),

verdicts as (
    select
        usage_date,
        api_key_hash,
        count(*) filter (where is_accepted is not null) as judged,
        count(*) filter (where is_accepted) as accepted,
        mode(workflow) as workflow
    from marts.fct_generations, params
    where usage_date between params.day - params.baseline_days and params.day
    group by usage_date, api_key_hash
),

with_results as (
    select
        key_days.*,
        verdicts.workflow,
        -- A share from a handful of judged requests, scaled to a loop's request count, would make the loop
        -- look productive; below 30 verdicts the output (completion tokens) is the measure instead.
        case when verdicts.judged >= 30 then key_days.requests * verdicts.accepted / verdicts.judged end
            as accepted_results
    from key_days
    left join verdicts using (usage_date, api_key_hash)
),

norms as (
    select
        past.api_key_hash,
        count(*) as active_days,
        case when any_value(params.baseline_method) = 'mean' then avg(past.requests) else median(past.requests) end
            as norm_requests,
        case when any_value(params.baseline_method) = 'mean' then avg(past.spend_usd) else median(past.spend_usd) end
            as norm_spend_usd,
        case when any_value(params.baseline_method) = 'mean'
            then avg(past.completion_tokens) else median(past.completion_tokens) end as norm_completion_tokens,
        case when any_value(params.baseline_method) = 'mean'
            then avg(past.accepted_results) else median(past.accepted_results) end as norm_accepted_results
    from with_results as past, params
    where past.usage_date < params.day and past.requests > 0
    group by past.api_key_hash
),

assessed as (
    select
        today.*,
        norms.active_days,
        norms.norm_requests,
        norms.norm_spend_usd,
        norms.norm_completion_tokens,
        norms.norm_accepted_results,
        today.requests / nullif(norms.norm_requests, 0) as request_ratio,
        today.spend_usd / nullif(norms.norm_spend_usd, 0) as spend_ratio,
        case
            when today.accepted_results is not null and norms.norm_accepted_results > 0
                then 'accepted_results'
            when norms.norm_completion_tokens > 0 then 'completion_tokens'
        end as results_measure
    from with_results as today
    cross join params
    inner join norms using (api_key_hash)
    where today.usage_date = params.day
),

measured as (
    select
        *,
        case results_measure
            when 'accepted_results' then accepted_results / norm_accepted_results
            when 'completion_tokens' then completion_tokens / norm_completion_tokens
        end as results_ratio
    from assessed
),

final as (
    select
        'runaway_usage' as rule_id,
        params.day as usage_date,
        'api_key=' || measured.api_key_hash as segment_key,
        measured.project,
        measured.api_key_hash,
        measured.api_key_name,
        measured.top_model as model,
        null as provider_name,
        measured.workflow,
        null as signal,
        case when measured.request_ratio >= measured.spend_ratio then 'requests' else 'spend_usd' end as metric,
        case when measured.request_ratio >= measured.spend_ratio
            then measured.requests else measured.spend_usd end as observed_value,
        case when measured.request_ratio >= measured.spend_ratio
            then measured.norm_requests else measured.norm_spend_usd end as expected_value,
        params.min_ratio * case when measured.request_ratio >= measured.spend_ratio
            then measured.norm_requests else measured.norm_spend_usd end as threshold_value,
        measured.spend_usd - measured.norm_spend_usd * greatest(measured.results_ratio, 1) as impact_usd,
        params.day as window_start,
        params.day as window_end,
        params.day - params.baseline_days as baseline_start,
        params.day - 1 as baseline_end,
        history.history_days,
        null as severity,
        to_json([{
            'dimension': 'model', 'name': measured.top_model, 'requests': measured.requests
        }]) as contributors,
        to_json({
            'spend_usd': round(measured.spend_usd, 2),
            'norm_spend_usd': round(measured.norm_spend_usd, 2),
            'requests': measured.requests,
            'norm_requests': round(measured.norm_requests),
            'request_ratio': round(measured.request_ratio, 2),
            'spend_ratio': round(measured.spend_ratio, 2),
            'results_measure': measured.results_measure,
            'results_ratio': round(measured.results_ratio, 2),
            'completion_tokens': measured.completion_tokens,
            'norm_completion_tokens': round(measured.norm_completion_tokens),
            'active_days_in_baseline': measured.active_days
        }) as facts
    from measured
    cross join params
    cross join history
    where history.history_days >= params.min_history_days
        and measured.results_ratio is not null
        and greatest(measured.request_ratio, measured.spend_ratio) >= params.min_ratio
        and measured.results_ratio <= params.max_output_ratio
        and measured.requests >= params.min_requests
        and measured.spend_usd - measured.norm_spend_usd * greatest(measured.results_ratio, 1)
            >= params.min_impact_usd
)

select * from final
