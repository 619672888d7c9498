-- stg_key_snapshots: every /keys snapshot, one row per key per snapshot (partition).
-- Grain: snapshot_date × api_key_hash. Key: the same two columns.
-- Source: raw.keys; lifetime usage differences between snapshots reconcile with activity.
-- Timing: /keys describes the moment it is fetched ("now"; `usage` includes the current UTC day's spend so
--   far, which `usage_daily` reports). Fetched during the day after snapshot_date (snapshot_timing
--   'on_time'), the usage at the end of snapshot_date is usage − usage_daily (end_of_day_*); fetched after
--   that day ended ('late': a backfill) or before snapshot_date ended ('early') the snapshot does not
--   describe the end of its day and end_of_day_* are NULL.
-- Cost: the newest fetch per partition and key is flagged in raw.keys (is_latest_fetch, written by the load,
--   which replaces a partition's rows whole), so a reader filters on a column instead of grouping every fetch
--   ever loaded by partition and key. A filter on snapshot_date reaches the raw scan, so a day's snapshot
--   parses only that day's items. usage_daily comes from raw.keys' typed column (the load writes it from the
--   same item), so stg_credits' sum of it over every snapshot reads narrow columns, not the JSON.
with
source as (
    select *
    from raw.keys
    where is_latest_fetch
),

typed as (
    select
        ---------- keys
        partition_date as snapshot_date,
        key_hash as api_key_hash,
        ---------- attributes
        payload ->> 'name' as api_key_name,
        payload ->> 'label' as api_key_label,
        payload ->> 'workspace_id' as workspace_id,
        payload ->> 'creator_user_id' as creator_user_id,
        payload ->> 'external_user' as external_user,
        coalesce(cast(payload ->> 'disabled' as boolean), false) as is_disabled,
        ---------- limits and usage (USD)
        cast(payload ->> 'limit' as double) as limit_usd,
        cast(payload ->> 'limit_remaining' as double) as limit_remaining_usd,
        payload ->> 'limit_reset' as limit_reset,
        cast(payload ->> 'include_byok_in_limit' as boolean) as is_byok_in_limit,
        cast(payload ->> 'usage' as double) as usage_usd,
        cast(payload ->> 'byok_usage' as double) as byok_usage_usd,
        usage_daily as usage_daily_usd,
        cast(payload ->> 'byok_usage_daily' as double) as byok_usage_daily_usd,
        ---------- timestamps
        cast(payload ->> 'created_at' as timestamptz) as created_at,
        cast(payload ->> 'updated_at' as timestamptz) as updated_at,
        cast(payload ->> 'expires_at' as timestamptz) as expires_at,
        cast(payload ->> 'last_used_at' as timestamptz) as last_used_at,
        ---------- lineage
        fetched_at,
        run_id
    from source
),

timed as (
    select
        *,
        marts.snapshot_timing(snapshot_date, fetched_at) as snapshot_timing
    from typed
),

final as (
    select
        *,
        snapshot_timing = 'late' as is_late_snapshot,
        case when snapshot_timing = 'on_time' then usage_usd - coalesce(usage_daily_usd, 0) end
            as end_of_day_usage_usd,
        case when snapshot_timing = 'on_time' then byok_usage_usd - coalesce(byok_usage_daily_usd, 0) end
            as end_of_day_byok_usage_usd
    from timed
)

select * from final
