-- fct_generations inputs: a digest of everything a day of marts.fct_generations is computed from, per day to
-- build; a day whose digest equals the one recorded when it was last built is left as it is (its rows would
-- come out the same), so a rerun of an unchanged day does not rewrite a million rows.
-- Grain: usage_date. Key: usage_date (the days in getvariable('mart_days')).
-- Reads what sql/marts/fct_generations.sql reads for a day D, bounded so it stays cheap:
--   every request-log file as loaded (a line of any day's file may be the one kept for an id logged on D or
--   D-1; raw.request_log changes only when a file is loaded), the enrichment queue and /generation records of
--   the ids first logged on or before D (an id logged on D was first logged then or earlier; a record without
--   a usage day counts for every day), the activity and projects of every key up to D (the project of a key
--   is the one of its latest day), the named keys and the model prices.
-- The SELECT, the macros and the migrations are digested by the build itself (openrouter_spend.warehouse.marts).
with
build_days as (
    select usage_date from marts.build_days()
),

log_files as (
    select
        md5(coalesce(string_agg(
            concat_ws('|', source_file, sha256, status, loaded_at, load_count), ',' order by source_file
        ), '')) as files_key
    from meta.request_log_files
),

queue_days as (
    select
        usage_date,
        count(*) as entries,
        bit_xor(hash(generation_id, status, sampling_stratum)) as entries_hash
    from meta.generation_queue
    group by usage_date
),

record_days as (
    select
        usage_date,
        count(*) as records,
        bit_xor(hash(generation_id, sha256, fetched_at)) as records_hash
    from raw.generations
    group by usage_date
),

activity_days as (
    select
        usage_date,
        count(*) as cells,
        bit_xor(hash(api_key_hash, project, model, provider_name, requests, spend_usd, byok_spend_usd))
            as cells_hash
    from marts.fct_daily_spend
    group by usage_date
),

named_keys as (
    select md5(coalesce(string_agg(concat_ws('|', api_key_hash, api_key_name), ',' order by api_key_hash), ''))
        as keys_key
    from staging.stg_keys
),

prices as (
    select md5(coalesce(string_agg(cast(prices as varchar), ',' order by prices.model, prices.in_force_from), ''))
        as prices_key
    from intermediate.int_model_price_daily as prices
),

per_day as (
    select
        build_days.usage_date,
        (select string_agg(concat_ws(':', usage_date, entries, entries_hash), ',' order by usage_date)
         from queue_days where queue_days.usage_date <= build_days.usage_date) as queue_key,
        (select string_agg(concat_ws(':', usage_date, records, records_hash), ',' order by usage_date nulls first)
         from record_days
         where record_days.usage_date is null or record_days.usage_date <= build_days.usage_date) as records_key,
        (select string_agg(concat_ws(':', usage_date, cells, cells_hash), ',' order by usage_date)
         from activity_days where activity_days.usage_date <= build_days.usage_date) as activity_key
    from build_days
),

final as (
    select
        per_day.usage_date,
        md5(concat_ws(
            '/', log_files.files_key, coalesce(per_day.queue_key, ''), coalesce(per_day.records_key, ''),
            coalesce(per_day.activity_key, ''), named_keys.keys_key, prices.prices_key
        )) as input_key
    from per_day
    cross join log_files
    cross join named_keys
    cross join prices
)

select * from final
