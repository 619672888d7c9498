-- int_model_price_daily: the prices of each model that apply to a usage day: the version in force on the
-- day, else (a day before the model's first /models snapshot) the model's first version.
-- Grain: model × price version, as ranges of days. Key: model, valid_from. Every day falls in exactly one
-- row of each model: in_force_from <= day and (in_force_to is NULL or day < in_force_to).
-- Upstream: marts.dim_model_price_history.
-- The first version is in force from the beginning of time ('-infinity'), so usage older than the model's
-- first snapshot still gets a price. A prompt or completion price (or the router flag) the version lacks
-- falls back to the first version's; the cache-read price is the version's own, since a model that stopped
-- offering a cache-read price has none to save with.
-- fct_daily_spend (prices and the premium class of the day), fct_generations (the requested model's prices)
-- and rpt_savings_opportunities (cache-read prices, the prices before a change) read it. A view: it is one
-- row per model and price change.
with
versions as (
    select
        *,
        first_value(prompt_price_per_mtok_usd) over by_model as first_prompt_price_per_mtok_usd,
        first_value(completion_price_per_mtok_usd) over by_model as first_completion_price_per_mtok_usd,
        first_value(is_router_price) over by_model as first_is_router_price,
        row_number() over by_model = 1 as is_first_version
    from marts.dim_model_price_history
    window by_model as (partition by model order by valid_from)
),

final as (
    select
        ---------- keys
        model,
        valid_from,
        ---------- days the prices apply to
        case when is_first_version then '-infinity'::date else valid_from end as in_force_from,
        valid_to as in_force_to,
        ---------- prices (USD per 1M tokens)
        coalesce(prompt_price_per_mtok_usd, first_prompt_price_per_mtok_usd) as prompt_price_per_mtok_usd,
        coalesce(completion_price_per_mtok_usd, first_completion_price_per_mtok_usd)
            as completion_price_per_mtok_usd,
        cache_read_price_per_mtok_usd,
        coalesce(is_router_price, first_is_router_price) as is_router_price
    from versions
)

select * from final
