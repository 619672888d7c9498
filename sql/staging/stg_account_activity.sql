-- stg_account_activity: account-level usage from /activity?date=D (all keys, deleted ones included).
-- Grain: usage_date × model_permaslug × endpoint_id. Key: the same three columns.
-- Source: raw.activity (scope 'account'). Reconciles against the per-key rows of stg_activity.
with
source as (
    select * from raw.activity where scope = 'account'
),

typed as (
    select
        ---------- keys
        cast(left(payload ->> 'date', 10) as date) as usage_date,
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
        ---------- lineage
        partition_date,
        fetched_at,
        run_id
    from source
),

deduplicated as (
    select * from typed
    qualify row_number() over (
        partition by usage_date, model_permaslug, endpoint_id
        order by fetched_at desc
    ) = 1
)

select * from deduplicated
