-- key_snapshot_days: the /keys snapshots up to the day, newest first, with their timing, so the gate can pick
-- which earlier snapshot the day's snapshot is reconciled with (reconcile.SnapshotPair).
-- Grain: snapshot_date. Key: snapshot_date.
-- Upstream: staging.stg_key_snapshots.
-- Parameters: $day.
select
    snapshot_date,
    any_value(snapshot_timing) as snapshot_timing,
    max(fetched_at) as fetched_at
from staging.stg_key_snapshots
where snapshot_date <= $day
group by snapshot_date
order by snapshot_date desc
