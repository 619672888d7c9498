-- key_snapshot_days: the /keys snapshots up to the day, newest first, with their timing, so the gate can pick
-- which earlier snapshot the day's snapshot is reconciled with (reconcile.SnapshotPair).
-- Grain: snapshot_date. Key: snapshot_date.
-- Upstream: raw.keys (the partitions of staging.stg_key_snapshots).
-- Parameters: $day.
-- Read from raw.keys' narrow columns, without stg_key_snapshots' pick of each key's newest fetch over every
-- partition: the partition's newest fetch is the newest fetch of its key, so it is one of the rows the pick
-- keeps, and its timing is the snapshot's (max(fetched_at) is the same over the picked rows as over all).
select
    partition_date as snapshot_date,
    marts.snapshot_timing(partition_date, max(fetched_at)) as snapshot_timing,
    max(fetched_at) as fetched_at
from raw.keys
where partition_date <= $day
group by partition_date
order by snapshot_date desc
