-- rpt_savings_opportunities: where the organisation could spend less, in dollars per month, ranked by
-- monthly_saving_usd. Two kinds so far: prompt_caching (prompt tokens read at the full prompt price on models
-- that offer a cheaper cache-read price) and price_change (a model's price moved in the last 30 days).
-- Grain: usage_date × project × opportunity_kind × api_key_hash × model_permaslug (api_key_hash NULL for price_change)
-- Upstream: marts.fct_daily_spend (the day and the 6 before it), marts.dim_model_price_history,
--   intermediate.int_model_price_daily.
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- Run rate: the figures of the window (the day and the 6 days before it) divided by its loaded days (days
-- with any row in fct_daily_spend, so a quiet day of a key counts as zero) × 30.
-- prompt_caching, per key and model used that day, for models with a cache-read price below the prompt
-- price in force that day: saved_today_usd = cached tokens × (prompt − cache-read price);
-- monthly_saving_usd = the run rate of uncached prompt tokens × (prompt − cache-read price), an UPPER BOUND
-- (bound_kind 'upper_bound'): not every prompt is cacheable, and cache writes can cost extra. Cached tokens
-- count at most the prompt tokens (response-cache replays can report more).
-- price_change, per project and model used in the window, when a price version started in the 30 days
-- ending that day: the net change from the prices in force the day before those 30 days (the model's first
-- version when it is younger) to the prices in force that day, times the project's tokens at the run rate
-- (bound_kind 'estimate'): uncached prompt tokens at the prompt price, cached tokens at the cache-read price
-- (the prompt price where none is offered), completion tokens at the completion price.
-- monthly_price_effect_usd is negative for a price drop (a saving realised); monthly_saving_usd is its size.
-- Only rows worth at least $0.01 a month are kept.
with
build_days as (
    select unnest(getvariable('mart_days')) as usage_date
),

bounds as (
    select min(usage_date) - interval 6 day as first_day, max(usage_date) as last_day from build_days
),

spend as (
    select * from marts.fct_daily_spend
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
),

windows as (
    select
        build_days.usage_date,
        count(loaded.usage_date)::integer as loaded_days_7d
    from build_days
    left join (select distinct usage_date from spend) as loaded
        on loaded.usage_date between build_days.usage_date - 6 and build_days.usage_date
    group by build_days.usage_date
),

-- The cache-read price that applies to the day (intermediate.int_model_price_daily).
priced_spend as (
    select
        spend.*,
        prices.cache_read_price_per_mtok_usd,
        least(spend.cached_tokens, spend.prompt_tokens) as cache_read_tokens
    from spend
    left join intermediate.int_model_price_daily as prices
        on spend.model = prices.model
        and spend.usage_date >= prices.in_force_from
        and (prices.in_force_to is null or spend.usage_date < prices.in_force_to)
),

---------- prompt_caching

cache_key_days as (
    select
        usage_date,
        api_key_hash,
        model_permaslug,
        any_value(project) as project,
        any_value(team) as team,
        any_value(budget_owner) as budget_owner,
        min(model) as model,
        sum(prompt_tokens) as prompt_tokens,
        sum(cache_read_tokens) as cached_tokens,
        max(prompt_price_per_mtok_usd) as prompt_price_per_mtok_usd,
        max(cache_read_price_per_mtok_usd) as cache_read_price_per_mtok_usd,
        marts.exact_sum(cache_read_tokens * (prompt_price_per_mtok_usd - cache_read_price_per_mtok_usd) / 1e6)
            as saved_today_usd,
        marts.exact_sum((prompt_tokens - cache_read_tokens)
            * (prompt_price_per_mtok_usd - cache_read_price_per_mtok_usd) / 1e6) as missed_saving_today_usd
    from priced_spend
    where prompt_price_per_mtok_usd > cache_read_price_per_mtok_usd
    group by usage_date, api_key_hash, model_permaslug
),

cache_windows as (
    select
        today.usage_date,
        today.api_key_hash,
        today.model_permaslug,
        marts.exact_sum(window_days.missed_saving_today_usd) as missed_saving_7d_usd
    from cache_key_days as today
    semi join build_days using (usage_date)
    inner join cache_key_days as window_days
        on window_days.api_key_hash = today.api_key_hash
        and window_days.model_permaslug = today.model_permaslug
        and window_days.usage_date between today.usage_date - 6 and today.usage_date
    group by today.usage_date, today.api_key_hash, today.model_permaslug
),

prompt_caching as (
    select
        today.usage_date,
        today.project,
        today.team,
        today.budget_owner,
        'prompt_caching' as opportunity_kind,
        today.api_key_hash,
        today.model_permaslug,
        today.model,
        null::varchar as provider_name,
        cache_windows.missed_saving_7d_usd / windows.loaded_days_7d * 30 as monthly_saving_usd,
        'upper_bound' as bound_kind,
        format('(prompt - cache-read price) x uncached prompt tokens, mean of {} loaded day(s) of the 7 ending '
               || 'this day x 30; an upper bound: not every prompt is cacheable', windows.loaded_days_7d) as basis,
        windows.loaded_days_7d,
        today.prompt_tokens,
        today.cached_tokens,
        today.cached_tokens / nullif(today.prompt_tokens, 0) as cached_share,
        today.prompt_price_per_mtok_usd,
        today.cache_read_price_per_mtok_usd,
        today.saved_today_usd,
        today.missed_saving_today_usd
    from cache_key_days as today
    inner join cache_windows using (usage_date, api_key_hash, model_permaslug)
    inner join windows using (usage_date)
),

---------- price_change

project_model_windows as (
    select
        build_days.usage_date,
        spend.project,
        spend.model_permaslug,
        spend.model,
        arg_max(spend.team, spend.usage_date) as team,
        arg_max(spend.budget_owner, spend.usage_date) as budget_owner,
        sum(spend.prompt_tokens - spend.cache_read_tokens) as uncached_tokens_7d,
        sum(spend.cache_read_tokens) as cached_tokens_7d,
        sum(spend.prompt_tokens) as prompt_tokens_7d,
        sum(spend.completion_tokens) as completion_tokens_7d
    from build_days
    inner join priced_spend as spend
        on spend.usage_date between build_days.usage_date - 6 and build_days.usage_date
    group by build_days.usage_date, spend.project, spend.model_permaslug, spend.model
),

price_moves as (
    select
        volumes.*,
        current_prices.valid_from as price_changed_on,
        before.prompt_price_per_mtok_usd as old_prompt_price_per_mtok_usd,
        current_prices.prompt_price_per_mtok_usd as new_prompt_price_per_mtok_usd,
        before.completion_price_per_mtok_usd as old_completion_price_per_mtok_usd,
        current_prices.completion_price_per_mtok_usd as new_completion_price_per_mtok_usd,
        before.cache_read_price_per_mtok_usd as old_cache_read_price_per_mtok_usd,
        current_prices.cache_read_price_per_mtok_usd as new_cache_read_price_per_mtok_usd
    from project_model_windows as volumes
    inner join marts.dim_model_price_history as current_prices
        on current_prices.model = volumes.model
        and volumes.usage_date >= current_prices.valid_from
        and (current_prices.valid_to is null or volumes.usage_date < current_prices.valid_to)
    -- The prices that applied the day before the 30 days; a later version than theirs is a change.
    inner join intermediate.int_model_price_daily as before
        on before.model = volumes.model
        and volumes.usage_date - 30 >= before.in_force_from
        and (before.in_force_to is null or volumes.usage_date - 30 < before.in_force_to)
    where current_prices.valid_from > volumes.usage_date - 30
        and current_prices.valid_from > before.valid_from
),

price_effects as (
    select
        price_moves.*,
        windows.loaded_days_7d,
        (
            (new_prompt_price_per_mtok_usd - old_prompt_price_per_mtok_usd) * uncached_tokens_7d
            + (coalesce(new_cache_read_price_per_mtok_usd, new_prompt_price_per_mtok_usd)
                - coalesce(old_cache_read_price_per_mtok_usd, old_prompt_price_per_mtok_usd)) * cached_tokens_7d
            + (new_completion_price_per_mtok_usd - old_completion_price_per_mtok_usd) * completion_tokens_7d
        ) / 1e6 / windows.loaded_days_7d * 30 as monthly_price_effect_usd
    from price_moves
    inner join windows using (usage_date)
),

-- A permaslug can hold two model ids (a paid model and its ':free' variant on another provider): their
-- effects add up; the prices shown are those of the model with the larger effect.
price_change as (
    select
        usage_date,
        project,
        arg_max(team, abs(monthly_price_effect_usd)) as team,
        arg_max(budget_owner, abs(monthly_price_effect_usd)) as budget_owner,
        'price_change' as opportunity_kind,
        null::varchar as api_key_hash,
        model_permaslug,
        arg_max(model, abs(monthly_price_effect_usd)) as model,
        null::varchar as provider_name,
        abs(marts.exact_sum(monthly_price_effect_usd)) as monthly_saving_usd,
        'estimate' as bound_kind,
        arg_max(format('prices of {} changed on {} (prompt {:g} -> {:g}, completion {:g} -> {:g} USD/Mtok): the '
                       || 'change x the project''s tokens of {} loaded day(s) of the 7 ending this day x 30 / {}',
                       model, price_changed_on, old_prompt_price_per_mtok_usd, new_prompt_price_per_mtok_usd,
                       old_completion_price_per_mtok_usd, new_completion_price_per_mtok_usd, loaded_days_7d,
                       loaded_days_7d), abs(monthly_price_effect_usd)) as basis,
        any_value(loaded_days_7d) as loaded_days_7d,
        arg_max(price_changed_on, abs(monthly_price_effect_usd)) as price_changed_on,
        case when marts.exact_sum(monthly_price_effect_usd) > 0 then 'rise' else 'drop' end as price_direction,
        arg_max(old_prompt_price_per_mtok_usd, abs(monthly_price_effect_usd)) as old_prompt_price_per_mtok_usd,
        arg_max(new_prompt_price_per_mtok_usd, abs(monthly_price_effect_usd)) as new_prompt_price_per_mtok_usd,
        arg_max(old_completion_price_per_mtok_usd, abs(monthly_price_effect_usd))
            as old_completion_price_per_mtok_usd,
        arg_max(new_completion_price_per_mtok_usd, abs(monthly_price_effect_usd))
            as new_completion_price_per_mtok_usd,
        arg_max(old_cache_read_price_per_mtok_usd, abs(monthly_price_effect_usd))
            as old_cache_read_price_per_mtok_usd,
        arg_max(new_cache_read_price_per_mtok_usd, abs(monthly_price_effect_usd))
            as new_cache_read_price_per_mtok_usd,
        sum(prompt_tokens_7d) as prompt_tokens_7d,
        sum(cached_tokens_7d) as cached_tokens_7d,
        sum(completion_tokens_7d) as completion_tokens_7d,
        marts.exact_sum(monthly_price_effect_usd) as monthly_price_effect_usd
    from price_effects
    where monthly_price_effect_usd is not null
    group by usage_date, project, model_permaslug
),

final as (
    select * from prompt_caching
    union all by name
    select * from price_change
)

select * from final
where monthly_saving_usd >= 0.01
