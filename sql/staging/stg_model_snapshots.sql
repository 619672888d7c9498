-- stg_model_snapshots: daily /models price snapshots, prices converted from USD/token strings to USD/1M tokens.
-- Grain: snapshot_date × model_id. Key: the same two columns.
-- Source: raw.models. Router models report the sentinel price -1; it is kept and flagged, not converted.
with
source as (
    select * from raw.models
),

typed as (
    select
        ---------- keys
        partition_date as snapshot_date,
        model_id,
        payload ->> 'canonical_slug' as model_permaslug,
        payload ->> 'name' as model_name,
        ---------- prices (USD per 1M tokens; NULL for router sentinels)
        try_cast(payload -> 'pricing' ->> 'prompt' as double) as prompt_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'completion' as double) as completion_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'input_cache_read' as double) as cache_read_price_per_token_usd,
        try_cast(payload -> 'pricing' ->> 'request' as double) as request_price_usd,
        ---------- attributes
        cast(payload ->> 'context_length' as bigint) as context_length,
        payload -> 'architecture' ->> 'modality' as modality,
        ends_with(model_id, ':free') as is_free_variant,
        ---------- lineage
        fetched_at,
        run_id
    from source
),

converted as (
    select
        * exclude (prompt_price_per_token_usd, completion_price_per_token_usd, cache_read_price_per_token_usd),
        prompt_price_per_token_usd < 0 or completion_price_per_token_usd < 0 as is_router_price,
        marts.price_per_mtok(prompt_price_per_token_usd) as prompt_price_per_mtok_usd,
        marts.price_per_mtok(completion_price_per_token_usd) as completion_price_per_mtok_usd,
        marts.price_per_mtok(cache_read_price_per_token_usd) as cache_read_price_per_mtok_usd
    from typed
),

deduplicated as (
    select * from converted
    qualify row_number() over (partition by snapshot_date, model_id order by fetched_at desc) = 1
)

select * from deduplicated
