-- runaway_usage: a key runs far more requests (or spends far more) than its norm on the same work, while the
-- results it produces do not follow: a loop, a retry storm or a duplicated job, not growth.
-- Grain: one row per API key crossing the thresholds on the evaluated day. Segment: key.
-- Upstream: intermediate.int_key_daily_spend (with the requests per model), marts.fct_generations (acceptance
--   verdicts, where request logs carry them), marts.rpt_key_usage_daily (the key's measured waste: the one
--   waste figure of the key and day), staging.stg_loaded_days.
-- Parameters: alert_day, baseline_days, baseline_method, min_history_days, min_ratio, max_output_ratio,
--   min_verdicts, min_usual_model_share, min_requests, min_impact_usd.
-- Method: norms are the median (or mean) over the key's active days among the previous baseline_days days.
-- The key must be doing its usual work: at least min_usual_model_share of today's requests go to models it
-- used in that window (a new model is a new workload, credit_burn_spike's). Then:
--   - with an accepted-result signal (at least min_verdicts acceptance verdicts today and a norm of accepted
--     results: accepted share of the judged generations × requests), it fires when requests or spend reach
--     min_ratio × norm and accepted results stay at most max_output_ratio × their norm;
--   - without one, the request (or spend) multiple on unchanged models is the signal: output tokens cannot
--     tell a loop from growth, since a loop that repeats its work produces output in proportion.
-- Impact = the larger of the key's measured waste (rpt_key_usage_daily.wasted_spend_usd, the figure the
-- digest and rpt_spend_change show) and the spend beyond what the day's results usually cost (spend − norm
-- spend × max(results ratio, 1); without a results signal, the spend beyond the key's usual day).
with
params as (
    select
        cast(getvariable('alert_day') as date) as day,
        cast(getvariable('baseline_days') as integer) as baseline_days,
        cast(getvariable('baseline_method') as varchar) as baseline_method,
        cast(getvariable('min_history_days') as integer) as min_history_days,
        cast(getvariable('min_ratio') as double) as min_ratio,
        cast(getvariable('max_output_ratio') as double) as max_output_ratio,
        cast(getvariable('min_verdicts') as bigint) as min_verdicts,
        cast(getvariable('min_usual_model_share') as double) as min_usual_model_share,
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

key_window as (
    select keys.*
    from intermediate.int_key_daily_spend as keys
    -- getvariable, not params: constants at bind time, so the filter reaches fct_daily_spend's scan
    where keys.usage_date between cast(getvariable('alert_day') as date) - cast(getvariable('baseline_days') as integer)
        and cast(getvariable('alert_day') as date)
        and keys.api_key_hash <> '(unattributed)'
),

key_models as (
    select usage_date, api_key_hash, unnest(model_requests, recursive := true)
    from key_window
),

usual_models as (
    select distinct key_models.api_key_hash, key_models.model
    from key_models, params
    where key_models.usage_date < params.day and key_models.requests > 0
),

usual_model_requests as (
    select key_models.usage_date, key_models.api_key_hash, sum(key_models.requests) as usual_model_requests
    from key_models
    semi join usual_models using (api_key_hash, model)
    group by key_models.usage_date, key_models.api_key_hash
),

key_days as (
    select
        key_window.usage_date, key_window.api_key_hash, key_window.api_key_name, key_window.project,
        key_window.spend_usd, key_window.requests, key_window.completion_tokens, key_window.top_model,
        usual_model_requests.usual_model_requests
    from key_window
    left join usual_model_requests using (usage_date, api_key_hash)
),

verdicts as (
    select
        usage_date,
        api_key_hash,
        count(*) filter (where is_accepted is not null) as judged,
        count(*) filter (where is_accepted) as accepted,
        mode(workflow) as workflow
    from marts.fct_generations
    where usage_date between cast(getvariable('alert_day') as date) - cast(getvariable('baseline_days') as integer)
        and cast(getvariable('alert_day') as date)
    group by usage_date, api_key_hash
),

with_results as (
    select
        key_days.*,
        verdicts.workflow,
        verdicts.judged,
        -- A share from a handful of verdicts, scaled to a loop's request count, would make the loop look
        -- productive: below min_verdicts the key has no accepted-result signal that day.
        case when verdicts.judged >= params.min_verdicts
            then key_days.requests * verdicts.accepted / verdicts.judged end as accepted_results
    from key_days
    cross join params
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
        coalesce(today.usual_model_requests, 0) / nullif(today.requests, 0) as usual_model_share,
        today.requests / nullif(norms.norm_requests, 0) as request_ratio,
        today.spend_usd / nullif(norms.norm_spend_usd, 0) as spend_ratio,
        case when today.accepted_results is not null and norms.norm_accepted_results > 0
            then today.accepted_results / norms.norm_accepted_results end as results_ratio,
        coalesce(waste.wasted_spend_usd, 0) as measured_waste_usd,
        waste.waste_method
    from with_results as today
    cross join params
    inner join norms using (api_key_hash)
    left join marts.rpt_key_usage_daily as waste using (usage_date, api_key_hash)
    where today.usage_date = params.day
),

measured as (
    select
        *,
        case when results_ratio is not null then 'accepted_results' else 'none' end as results_measure,
        spend_usd - norm_spend_usd * greatest(coalesce(results_ratio, 1), 1) as beyond_results_usd
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
        greatest(measured.measured_waste_usd, measured.beyond_results_usd) as impact_usd,
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
            'excess_spend_usd': round(measured.spend_usd - measured.norm_spend_usd, 2),
            'requests': measured.requests,
            'norm_requests': round(measured.norm_requests),
            'request_ratio': round(measured.request_ratio, 2),
            'spend_ratio': round(measured.spend_ratio, 2),
            'usual_model_share': round(measured.usual_model_share, 3),
            'results_measure': measured.results_measure,
            'results_ratio': round(measured.results_ratio, 2),
            'verdicts': coalesce(measured.judged, 0),
            'completion_tokens': measured.completion_tokens,
            'norm_completion_tokens': round(measured.norm_completion_tokens),
            'output_ratio': round(measured.completion_tokens / nullif(measured.norm_completion_tokens, 0), 2),
            'measured_waste_usd': round(measured.measured_waste_usd, 2),
            'waste_method': measured.waste_method,
            'impact_basis': case when measured.measured_waste_usd >= measured.beyond_results_usd
                then 'measured_waste'
                when measured.results_measure = 'none' then 'beyond_usual' else 'beyond_results' end,
            'active_days_in_baseline': measured.active_days
        }) as facts
    from measured
    cross join params
    cross join history
    where history.history_days >= params.min_history_days
        and measured.usual_model_share >= params.min_usual_model_share
        and greatest(measured.request_ratio, measured.spend_ratio) >= params.min_ratio
        and coalesce(measured.results_ratio, 0) <= params.max_output_ratio
        and measured.requests >= params.min_requests
        and greatest(measured.measured_waste_usd, measured.beyond_results_usd) >= params.min_impact_usd
)

select * from final
