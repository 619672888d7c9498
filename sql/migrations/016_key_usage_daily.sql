-- raw.keys.usage_daily: each listed key's `usage_daily` (USD spent so far on the UTC day of the fetch) as a
-- typed column, written by the load beside the JSON it comes from. stg_credits sums it over every snapshot
-- for the day's end-of-day usage; read from the payload, that sum parsed every /keys item ever loaded on
-- every build. Rows loaded before this column existed get it from their payload here.
alter table raw.keys add column if not exists usage_daily double;

update raw.keys set usage_daily = cast(payload ->> 'usage_daily' as double) where usage_daily is null;
