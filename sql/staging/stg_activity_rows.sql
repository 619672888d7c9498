-- stg_activity_rows: every /activity row, typed, account-level and per-key alike.
-- Grain: scope × usage_date × api_key_hash × model_permaslug × endpoint_id (api_key_hash NULL for scope 'account').
-- Source: raw.activity; the newest fetch wins if a partition ever holds two. stg_activity and
-- stg_account_activity are the two scopes of this view.
with
source as (
    select * from raw.activity
),

typed as (
    select
        ---------- keys
        scope,
        -- The loader refuses an /activity row dated outside its partition (ingest/load.py): the partition is the
        -- usage day, and a filter on it reaches the table scan instead of parsing every row's JSON first.
        partition_date as usage_date,
        api_key_hash,
        payload ->> 'model' as model,
        payload ->> 'model_permaslug' as model_permaslug,
        payload ->> 'endpoint_id' as endpoint_id,
        payload ->> 'provider_name' as provider_name,
        ---------- money (USD)
        cast(payload ->> 'usage' as double) as usage_usd,
        coalesce(cast(payload ->> 'byok_usage_inference' as double), 0) as byok_usage_usd,
        ---------- volumes
        cast(payload ->> 'requests' as bigint) as requests,
        coalesce(cast(payload ->> 'prompt_tokens' as bigint), 0) as prompt_tokens,
        coalesce(cast(payload ->> 'completion_tokens' as bigint), 0) as completion_tokens,
        coalesce(cast(payload ->> 'reasoning_tokens' as bigint), 0) as reasoning_tokens,
        -- newer field: NULL (unknown) when a server does not send it, never a made-up 0
        cast(payload ->> 'cached_tokens' as bigint) as cached_tokens,
        cast(payload ->> 'byok_requests' as bigint) as byok_requests,
        ---------- lineage
        partition_date,
        fetched_at,
        run_id
    from source
),

deduplicated as (
    select * from typed
    qualify row_number() over (
        partition by scope, usage_date, api_key_hash, model_permaslug, endpoint_id
        order by fetched_at desc
    ) = 1
)

select * from deduplicated
