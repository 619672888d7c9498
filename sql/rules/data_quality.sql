-- data_quality: the day's data failed the quality gate; every decision alert of the day is recorded as
-- blocked instead of sent, and this alert goes to the data-engineering route.
-- Grain: at most one row for the evaluated day. Segment: the account's data ('warehouse').
-- Upstream: marts.fct_quality_runs (run_id, usage_date, validated_at, status, failed_count, summary: the
--   newest validation run of the day is its current status; alerts.py runs this rule only when the quality
--   gate's table exists).
-- Parameters: alert_day.
with
params as (
    select cast(getvariable('alert_day') as date) as day
),

latest_run as (
    select runs.*
    from marts.fct_quality_runs as runs, params
    where runs.usage_date = params.day
    qualify row_number() over (order by runs.validated_at desc, runs.run_id desc) = 1
),

final as (
    select
        'data_quality' as rule_id,
        params.day as usage_date,
        'warehouse' as segment_key,
        '*' as project,
        null as api_key_hash,
        null as api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'failed_expectations' as metric,
        cast(latest_run.failed_count as double) as observed_value,
        0.0 as expected_value,
        0.0 as threshold_value,
        null::double as impact_usd,
        params.day as window_start,
        params.day as window_end,
        null::date as baseline_start,
        null::date as baseline_end,
        null::integer as history_days,
        null as severity,
        '[]'::json as contributors,
        to_json({
            'run_id': latest_run.run_id,
            'validated_at': latest_run.validated_at,
            'failed_count': latest_run.failed_count,
            'summary': latest_run.summary
        }) as facts
    from latest_run
    cross join params
    where latest_run.status = 'failed'
)

select * from final
