-- marts.snapshot_timing(snapshot_date, fetched_at): when a /keys or /credits snapshot of snapshot_date was
-- fetched relative to the end of that day. Both describe the moment they are fetched ("now"): 'on_time' =
-- fetched during the following UTC day (the day's end is the fetch less the current day's spend so far),
-- 'late' = after the following day ended (a backfill), 'early' = before snapshot_date ended.
create or replace macro marts.snapshot_timing(snapshot_date, fetched_at) as
case
    when cast(timezone('UTC', fetched_at) as date) = snapshot_date + 1 then 'on_time'
    when cast(timezone('UTC', fetched_at) as date) > snapshot_date + 1 then 'late'
    else 'early'
end
