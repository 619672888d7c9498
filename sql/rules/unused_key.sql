-- unused_key: an enabled key nobody used for unused_key_days days (owners.yaml): an unused seat to revoke
-- or give an expiry. Evaluated with the /keys snapshot taken after the day, so past days replay as they were.
-- Grain: one row per unused key on the evaluated day (facts.state 'unused'), plus one per key whose unused
-- condition is open in the ledger but no longer holds (facts.state 'resolved': used again, disabled,
-- expired or deleted). Segment: key. A state-change rule (openrouter_spend.key_notices): the ledger records
-- a key when it becomes unused, when it escalates (escalate_after_days) and when it is resolved, not on
-- the days in between.
-- Upstream: staging.stg_key_snapshots (the day's snapshot), marts.fct_daily_spend (last day with requests),
--   config.settings + config.config_versions (unused_key_days of the current configuration),
--   marts.dim_api_key (owner of the key), marts.fct_alerts (the key's latest unused_key row before the day).
-- Parameters: alert_day.
-- Idle days count from the later of last_used_at and the last day with activity; a key never used counts
-- from its creation (the same grace period as docs/marts.md "Unused keys"). Impact = the key's spending
-- limit (what a leaked key could still spend; NULL when it has none).
with
params as (
    select cast(getvariable('alert_day') as date) as day
),

settings as (
    select settings.unused_key_days
    from config.settings as settings
    inner join config.config_versions as versions using (config_version_id)
    where versions.effective_to is null
),

snapshot as (
    select keys.*
    from staging.stg_key_snapshots as keys
    -- getvariable, not params.day: a constant at bind time, so only the day's snapshot is parsed
    where keys.snapshot_date = cast(getvariable('alert_day') as date)
),

-- fct_daily_spend sums staging.stg_activity per key and day, typed: no JSON of past days is parsed.
activity as (
    select api_key_hash, max(usage_date) as last_activity_date
    from marts.fct_daily_spend, params
    where requests > 0 and usage_date <= params.day
    group by api_key_hash
),

assessed as (
    select
        snapshot.*,
        activity.last_activity_date,
        greatest(cast(snapshot.last_used_at as date), activity.last_activity_date) as last_use_date,
        params.day - coalesce(
            greatest(cast(snapshot.last_used_at as date), activity.last_activity_date),
            cast(snapshot.created_at as date)
        ) as idle_days,
        coalesce(snapshot.expires_at <= snapshot.fetched_at, false) as is_expired
    from snapshot
    cross join params
    left join activity using (api_key_hash)
),

-- Keys whose latest unused_key row before the day is not a resolution: the condition is still open. The
-- ledger has one row per segment and day; arg_max finds each segment's latest in a hash aggregate, where a
-- window would sort every row the rule ever wrote.
latest_conditions as (
    select
        arg_max({
            'api_key_hash': alerts.api_key_hash,
            'api_key_name': alerts.api_key_name,
            'project': alerts.project,
            'first_seen_date': alerts.first_seen_date,
            'occurrence': alerts.occurrence
        }, alerts.usage_date) as latest
    from marts.fct_alerts as alerts
    where alerts.rule_id = 'unused_key' and alerts.usage_date < cast(getvariable('alert_day') as date)
    group by alerts.segment_key
),

open_conditions as (
    select
        latest.api_key_hash,
        latest.api_key_name,
        latest.project,
        latest.first_seen_date
    from latest_conditions
    where latest.occurrence is distinct from 'resolved'
),

unused as (
    select assessed.*
    from assessed
    cross join settings
    where not assessed.is_disabled
        and not assessed.is_expired
        and assessed.idle_days >= settings.unused_key_days
),

-- Only a day with a /keys snapshot can tell that a key stopped being unused.
resolved as (
    select
        open_conditions.api_key_hash,
        coalesce(assessed.api_key_name, open_conditions.api_key_name) as api_key_name,
        coalesce(owners.project, open_conditions.project) as project,
        open_conditions.first_seen_date,
        assessed.idle_days,
        assessed.limit_usd,
        assessed.last_use_date,
        case
            when assessed.api_key_hash is null then 'deleted'
            when assessed.is_disabled then 'disabled'
            when assessed.is_expired then 'expired'
            else 'used'
        end as reason
    from open_conditions
    left join assessed using (api_key_hash)
    left join marts.dim_api_key as owners using (api_key_hash)
    where exists (select 1 from snapshot)
        and open_conditions.api_key_hash not in (select api_key_hash from unused)
),

unused_rows as (
    select
        'unused_key' as rule_id,
        params.day as usage_date,
        'api_key=' || assessed.api_key_hash as segment_key,
        coalesce(owners.project, '(unowned)') as project,
        assessed.api_key_hash,
        assessed.api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'idle_days' as metric,
        assessed.idle_days as observed_value,
        0.0 as expected_value,
        settings.unused_key_days as threshold_value,
        assessed.limit_usd as impact_usd,
        coalesce(assessed.last_use_date, cast(assessed.created_at as date)) as window_start,
        params.day as window_end,
        null::date as baseline_start,
        null::date as baseline_end,
        null::integer as history_days,
        null as severity,
        '[]'::json as contributors,
        to_json({
            'state': 'unused',
            'last_use_date': assessed.last_use_date,
            'created_date': cast(assessed.created_at as date),
            'never_used': assessed.last_use_date is null,
            'limit_usd': assessed.limit_usd,
            'lifetime_usage_usd': round(assessed.usage_usd, 2),
            'workspace_id': assessed.workspace_id,
            'creator_user_id': assessed.creator_user_id
        }) as facts
    from unused as assessed
    cross join params
    cross join settings
    left join marts.dim_api_key as owners using (api_key_hash)
),

resolved_rows as (
    select
        'unused_key' as rule_id,
        params.day as usage_date,
        'api_key=' || resolved.api_key_hash as segment_key,
        coalesce(resolved.project, '(unowned)') as project,
        resolved.api_key_hash,
        resolved.api_key_name,
        null as model,
        null as provider_name,
        null as workflow,
        null as signal,
        'idle_days' as metric,
        resolved.idle_days as observed_value,
        0.0 as expected_value,
        settings.unused_key_days as threshold_value,
        resolved.limit_usd as impact_usd,
        resolved.first_seen_date as window_start,
        params.day as window_end,
        null::date as baseline_start,
        null::date as baseline_end,
        null::integer as history_days,
        null as severity,
        '[]'::json as contributors,
        to_json({
            'state': 'resolved',
            'reason': resolved.reason,
            'last_use_date': resolved.last_use_date,
            'limit_usd': resolved.limit_usd
        }) as facts
    from resolved
    cross join params
    cross join settings
),

final as (
    select * from unused_rows
    union all by name
    select * from resolved_rows
)

select * from final
