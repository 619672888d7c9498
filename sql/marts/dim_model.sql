-- dim_model: every model ever seen, by permaslug, with its current prices and premium classification
-- under the current premium rule.
-- Grain: model_permaslug. Key: model_permaslug.
-- Upstream: staging.stg_models, marts.dim_model_price_history, config.premium_rules,
--   config.premium_model_lists (the current version: effective_to is NULL).
-- Rebuilt whole on every build. A paid model and its ':free' variant share a permaslug: the row
-- describes the paid model when there is one; has_free_variant says a ':free' variant exists.
-- Router models (price -1) have NULL prices.
with
current_version as (
    select config_version_id from config.config_versions where effective_to is null
),

models as (
    select
        *,
        max(snapshot_date) over () as as_of_date,
        bool_or(is_free_variant) over (partition by model_permaslug) as has_free_variant
    from staging.stg_models
),

representative as (
    select * from models
    qualify row_number() over (
        partition by model_permaslug order by is_free_variant, is_listed desc, model_id
    ) = 1
),

listed as (
    select
        representative.model_id,
        coalesce(bool_or(lists.is_premium), false) as is_listed_premium,
        coalesce(bool_or(not lists.is_premium), false) as is_listed_never_premium
    from representative
    left join config.premium_model_lists as lists
        on lists.config_version_id = (select config_version_id from current_version)
        and (representative.model_id glob lists.model_pattern
            or representative.model_permaslug glob lists.model_pattern)
    group by representative.model_id
),

classified as (
    select
        representative.*,
        prices.valid_from as price_valid_from,
        marts.premium_reason(
            representative.model_id,
            representative.prompt_price_per_mtok_usd,
            representative.completion_price_per_mtok_usd,
            representative.is_router_price,
            listed.is_listed_premium,
            listed.is_listed_never_premium,
            rules.completion_price_threshold_per_mtok_usd,
            rules.blended_price_threshold_per_mtok_usd,
            rules.blended_prompt_weight,
            rules.blended_completion_weight
        ) as premium_reason
    from representative
    inner join listed using (model_id)
    cross join (
        select * from config.premium_rules
        where config_version_id = (select config_version_id from current_version)
    ) as rules
    left join marts.dim_model_price_history as prices
        on prices.model = representative.model_id and prices.is_current
),

final as (
    select
        ---------- keys
        model_permaslug,
        model_id as model,
        model_name,
        ---------- current prices (USD per 1M tokens)
        prompt_price_per_mtok_usd,
        completion_price_per_mtok_usd,
        cache_read_price_per_mtok_usd,
        price_valid_from,
        ---------- classification (current premium rule)
        premium_reason in ('listed', 'completion_price', 'blended_price') as is_premium,
        premium_reason,
        coalesce(is_router_price, false) as is_router,
        has_free_variant,
        ---------- attributes
        context_length,
        is_listed,
        as_of_date
    from classified
)

select * from final
