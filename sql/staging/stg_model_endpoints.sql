-- stg_model_endpoints: every provider's price and uptime for the models used that day, from
-- GET /models/{id}/endpoints, prices converted from USD/token strings to USD/1M tokens.
-- Grain: snapshot_date × model_id × provider_name. Key: the same three columns.
-- Source: raw.model_endpoints (the newest landed answer per model and day). snapshot_date is the partition day
-- the answer was fetched for; like /models, it describes the prices at fetch time.
with
source as (
    select * from raw.model_endpoints
),

typed as (
    select
        ---------- keys
        partition_date as snapshot_date,
        model_id,
        provider_name,
        payload ->> 'model_id' as model_permaslug,
        payload ->> 'tag' as provider_tag,
        ---------- prices (USD per token as landed)
        try_cast(payload -> 'pricing' ->> 'prompt' as double) as prompt_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'completion' as double) as completion_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'input_cache_read' as double) as cache_read_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'input_cache_write' as double) as cache_write_price_per_token_usd,
        coalesce(try_cast(payload -> 'pricing' ->> 'request' as double), 0) as request_price_usd,
        ---------- health
        try_cast(payload ->> 'status' as integer) as status,
        try_cast(payload ->> 'uptime_last_5m' as double) as uptime_last_5m,
        try_cast(payload ->> 'uptime_last_30m' as double) as uptime_last_30m,
        try_cast(payload ->> 'uptime_last_1d' as double) as uptime_last_1d,
        payload ->> 'quantization' as quantization,
        try_cast(payload ->> 'context_length' as bigint) as context_length,
        ---------- lineage
        fetched_at,
        run_id
    from source
),

converted as (
    select
        * exclude (prompt_price_per_token_usd, completion_price_per_token_usd, cache_read_price_per_token_usd,
                   cache_write_price_per_token_usd),
        -- Router sentinels (-1) are not prices: NULL.
        marts.price_per_mtok(prompt_price_per_token_usd) as prompt_price_per_mtok_usd,
        marts.price_per_mtok(completion_price_per_token_usd) as completion_price_per_mtok_usd,
        marts.price_per_mtok(cache_read_price_per_token_usd) as cache_read_price_per_mtok_usd,
        marts.price_per_mtok(cache_write_price_per_token_usd) as cache_write_price_per_mtok_usd
    from typed
),

deduplicated as (
    select * from converted
    qualify row_number() over (partition by snapshot_date, model_id, provider_name order by fetched_at desc) = 1
)

select * from deduplicated
