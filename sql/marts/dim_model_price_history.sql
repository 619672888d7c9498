-- dim_model_price_history: every model's prices over time, a type-2 slowly changing dimension.
-- Grain: model (id) × price version. Key: model, valid_from.
-- Upstream: staging.stg_model_snapshots (the /models snapshot taken after each usage day).
-- A version starts on the first snapshot whose prices differ from the previous snapshot's; valid_to is
-- exclusive and NULL for the current version. Models that left /models keep their last version open.
-- Rebuilt whole on every build (it is small: one row per model and price change).
with
-- Read by flagged, in the part sqlfluff cannot parse.
snapshots as (  -- noqa: ST03
    select
        model_id as model,
        model_permaslug,
        snapshot_date,
        prompt_price_per_mtok_usd,
        completion_price_per_mtok_usd,
        cache_read_price_per_mtok_usd,
        coalesce(is_router_price, false) as is_router_price
    from staging.stg_model_snapshots
),

flagged as (
    select
        *,
        -- sqlfluff's DuckDB dialect does not parse IS DISTINCT FROM yet.
        -- noqa: disable=PRS
        row_number() over by_day = 1
            or prompt_price_per_mtok_usd is distinct from lag(prompt_price_per_mtok_usd) over by_day
            or completion_price_per_mtok_usd is distinct from lag(completion_price_per_mtok_usd) over by_day
            or cache_read_price_per_mtok_usd is distinct from lag(cache_read_price_per_mtok_usd) over by_day
            or is_router_price is distinct from lag(is_router_price) over by_day
            as starts_version
        -- noqa: enable=PRS
    from snapshots
    window by_day as (partition by model order by snapshot_date)
),

numbered as (
    select
        *,
        sum(case when starts_version then 1 else 0 end) over (
            partition by model order by snapshot_date
        ) as version_number
    from flagged
),

versions as (
    select
        model,
        version_number,
        arg_max(model_permaslug, snapshot_date) as model_permaslug,
        any_value(prompt_price_per_mtok_usd) as prompt_price_per_mtok_usd,
        any_value(completion_price_per_mtok_usd) as completion_price_per_mtok_usd,
        any_value(cache_read_price_per_mtok_usd) as cache_read_price_per_mtok_usd,
        any_value(is_router_price) as is_router_price,
        min(snapshot_date) as valid_from
    from numbered
    group by model, version_number
),

final as (
    select
        ---------- keys
        model,
        model_permaslug,
        ---------- prices (USD per 1M tokens)
        prompt_price_per_mtok_usd,
        completion_price_per_mtok_usd,
        cache_read_price_per_mtok_usd,
        is_router_price,
        ---------- validity
        valid_from,
        lead(valid_from) over (partition by model order by valid_from) as valid_to,
        lead(valid_from) over (partition by model order by valid_from) is null as is_current
    from versions
)

select * from final
