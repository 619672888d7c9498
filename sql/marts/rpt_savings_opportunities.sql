-- rpt_savings_opportunities: where the organisation could spend less, in dollars per month, ranked by
-- monthly_saving_usd. Four kinds: prompt_caching (prompt tokens read at the full prompt price on models that
-- offer a cheaper cache-read price), price_change (a model's price moved in the last 30 days),
-- provider_price_spread (a cheaper provider with comparable uptime serves the same model) and
-- premium_vs_standard (a standard model accepted about as often as a premium one in the same workflow).
-- noqa: disable=LT05
-- Grain: usage_date × project × opportunity_kind × api_key_hash × model_permaslug × workflow (api_key_hash NULL, workflow NULL)
-- noqa: enable=LT05
-- (api_key_hash is NULL for price_change and premium_vs_standard; workflow is NULL except for premium_vs_standard)
-- Upstream: marts.fct_daily_spend (the day and the 6 before it), marts.dim_model_price_history,
-- staging.stg_model_endpoints, marts.fct_generations, marts.dim_model,
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
-- provider_price_spread, per key and model used in the window: each used provider's tokens (uncached prompt,
-- cached at the cache-read price or the prompt price where none is offered, completion, requests) priced at
-- the used provider's endpoint prices and at every provider of the same model id with comparable uptime in the
-- newest stg_model_endpoints snapshot on or before the day. Comparable: status 0 and uptime_last_1d at least
-- the used provider's minus 2 points (the used provider always qualifies). The gap to the cheapest of them
-- (alternative_cost_7d_usd) over the window is the run rate (bound_kind 'estimate'). BYOK requests are pinned
-- to the key's own provider contract: their share of the gap (byok_requests ÷ requests of the cell) is
-- pinned_monthly_gap_usd, labelled pinned_reason 'byok' and not counted; a row whose whole gap is pinned has
-- monthly_saving_usd 0 and bound_kind 'not_counted'. /activity does not say when a request was pinned by a
-- data policy (provider.only, data_collection: deny), so only BYOK is recognised as pinning.
-- premium_vs_standard, per project and workflow of the request logs (fct_generations) over the day and the 6
-- before it: each premium model (dim_model.is_premium) against the standard model with the most requests
-- with a verdict in the same workflow (':free' variants and routers excluded). On requests with an accepted
-- verdict and a cost: acceptance rate = accepted ÷ requests (Wilson 95% interval), cost per accepted result
-- = cost (credits plus BYOK provider cost) ÷ accepted. When the standard rate is at least the premium rate
-- minus 5 points and its cost per
-- accepted result is lower: saving = premium cost − premium accepted results × standard cost per accepted
-- result, at the run rate (bound_kind 'estimate'); monthly_saving_low_usd / _high_usd put the standard rate
-- at its interval's low / high end (floored at 0). Mapped onto the grain: model_permaslug = the premium model,
-- api_key_hash NULL, workflow set; verdict_coverage = requests with a verdict ÷ logged requests of the
-- workflow on the two models. Figures cover the logged requests whose served model is known (unweighted: a
-- sampled, unenriched request is left out), so the saving is a floor of the workflow's.
-- Only rows worth at least $0.01 a month are kept (pinned gaps count for provider_price_spread rows).
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(6)
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

---------- provider_price_spread

endpoint_snapshots as (
    select distinct model_id, snapshot_date from staging.stg_model_endpoints
),

-- Each used provider's traffic of a key over the window, priced with the endpoint snapshot in force on the day.
spread_cells as (
    select
        build_days.usage_date,
        spend.api_key_hash,
        spend.model_permaslug,
        spend.model,
        spend.provider_name,
        snapshots.snapshot_date,
        arg_max(spend.project, spend.usage_date) as project,
        arg_max(spend.team, spend.usage_date) as team,
        arg_max(spend.budget_owner, spend.usage_date) as budget_owner,
        sum(spend.prompt_tokens - spend.cache_read_tokens) as uncached_tokens_7d,
        sum(spend.cache_read_tokens) as cached_tokens_7d,
        sum(spend.prompt_tokens) as prompt_tokens_7d,
        sum(spend.completion_tokens) as completion_tokens_7d,
        sum(spend.requests) as requests_7d,
        sum(spend.byok_requests) as byok_requests_7d
    from build_days
    inner join priced_spend as spend
        on spend.usage_date between build_days.usage_date - 6 and build_days.usage_date
    asof inner join endpoint_snapshots as snapshots
        on snapshots.model_id = spend.model
        and build_days.usage_date >= snapshots.snapshot_date
    group by build_days.usage_date, spend.api_key_hash, spend.model_permaslug, spend.model, spend.provider_name,
        snapshots.snapshot_date
),

spread_candidates as (
    select
        cells.*,
        used.uptime_last_1d as used_uptime_last_1d,
        candidate.provider_name as candidate_provider_name,
        candidate.uptime_last_1d as candidate_uptime_last_1d,
        (cells.uncached_tokens_7d * used.prompt_price_per_mtok_usd
            + cells.cached_tokens_7d * coalesce(used.cache_read_price_per_mtok_usd, used.prompt_price_per_mtok_usd)
            + cells.completion_tokens_7d * used.completion_price_per_mtok_usd) / 1e6
            + cells.requests_7d * used.request_price_usd as used_cost_7d_usd,
        (cells.uncached_tokens_7d * candidate.prompt_price_per_mtok_usd
            + cells.cached_tokens_7d
                * coalesce(candidate.cache_read_price_per_mtok_usd, candidate.prompt_price_per_mtok_usd)
            + cells.completion_tokens_7d * candidate.completion_price_per_mtok_usd) / 1e6
            + cells.requests_7d * candidate.request_price_usd as candidate_cost_7d_usd
    from spread_cells as cells
    inner join staging.stg_model_endpoints as used
        on used.snapshot_date = cells.snapshot_date
        and used.model_id = cells.model
        and used.provider_name = cells.provider_name
    inner join staging.stg_model_endpoints as candidate
        on candidate.snapshot_date = cells.snapshot_date
        and candidate.model_id = cells.model
    where used.prompt_price_per_mtok_usd is not null
        and used.completion_price_per_mtok_usd is not null
        and candidate.prompt_price_per_mtok_usd is not null
        and candidate.completion_price_per_mtok_usd is not null
        and (candidate.provider_name = used.provider_name
            or (coalesce(candidate.status, 0) = 0 and candidate.uptime_last_1d >= used.uptime_last_1d - 2))
),

spread_cell_gaps as (
    select
        usage_date, api_key_hash, model_permaslug, model, provider_name, project, team, budget_owner,
        any_value(used_uptime_last_1d) as used_uptime_last_1d,
        any_value(used_cost_7d_usd) as used_cost_7d_usd,
        min(candidate_cost_7d_usd) as cheapest_cost_7d_usd,
        arg_min(candidate_provider_name, candidate_cost_7d_usd) as cheapest_provider_name,
        arg_min(candidate_uptime_last_1d, candidate_cost_7d_usd) as cheapest_uptime_last_1d,
        any_value(prompt_tokens_7d) as prompt_tokens_7d,
        any_value(cached_tokens_7d) as cached_tokens_7d,
        any_value(completion_tokens_7d) as completion_tokens_7d,
        any_value(coalesce(byok_requests_7d, 0) / nullif(requests_7d, 0)) as byok_share
    from spread_candidates
    group by usage_date, api_key_hash, model_permaslug, model, provider_name, project, team, budget_owner
),

spread_keys as (
    select
        usage_date,
        api_key_hash,
        model_permaslug,
        arg_max(project, used_cost_7d_usd) as project,
        arg_max(team, used_cost_7d_usd) as team,
        arg_max(budget_owner, used_cost_7d_usd) as budget_owner,
        arg_max(model, used_cost_7d_usd - cheapest_cost_7d_usd) as model,
        arg_max(provider_name, used_cost_7d_usd - cheapest_cost_7d_usd) as provider_name,
        arg_max(used_uptime_last_1d, used_cost_7d_usd - cheapest_cost_7d_usd) as used_uptime_last_1d,
        arg_max(cheapest_provider_name, used_cost_7d_usd - cheapest_cost_7d_usd) as alternative_provider_name,
        arg_max(cheapest_uptime_last_1d, used_cost_7d_usd - cheapest_cost_7d_usd) as alternative_uptime_last_1d,
        marts.exact_sum(used_cost_7d_usd) as current_cost_7d_usd,
        marts.exact_sum(cheapest_cost_7d_usd) as alternative_cost_7d_usd,
        marts.exact_sum(
            (used_cost_7d_usd - cheapest_cost_7d_usd) * (1 - coalesce(byok_share, 0))
        ) as counted_gap_7d_usd,
        marts.exact_sum((used_cost_7d_usd - cheapest_cost_7d_usd) * coalesce(byok_share, 0)) as pinned_gap_7d_usd,
        sum(prompt_tokens_7d) as prompt_tokens_7d,
        sum(cached_tokens_7d) as cached_tokens_7d,
        sum(completion_tokens_7d) as completion_tokens_7d
    from spread_cell_gaps
    group by usage_date, api_key_hash, model_permaslug
),

provider_price_spread as (
    select
        keys.usage_date,
        keys.project,
        keys.team,
        keys.budget_owner,
        'provider_price_spread' as opportunity_kind,
        keys.api_key_hash,
        keys.model_permaslug,
        keys.model,
        keys.provider_name,
        keys.counted_gap_7d_usd / windows.loaded_days_7d * 30 as monthly_saving_usd,
        case when keys.counted_gap_7d_usd / windows.loaded_days_7d * 30 >= 0.01 then 'estimate'
            else 'not_counted' end as bound_kind,
        format('the key''s tokens at {} ({:g}% uptime over 1 day) instead of {} ({:g}%), the cheapest provider of {} '
               || 'within 2 uptime points: the gap over {} loaded day(s) of the 7 ending this day x 30{}',
               keys.alternative_provider_name, keys.alternative_uptime_last_1d, keys.provider_name,
               keys.used_uptime_last_1d, keys.model, windows.loaded_days_7d,
               case when keys.pinned_gap_7d_usd > 0 then '; BYOK requests are pinned to the key''s own provider '
                   || 'and not counted' else '' end) as basis,
        windows.loaded_days_7d,
        keys.prompt_tokens_7d,
        keys.cached_tokens_7d,
        keys.completion_tokens_7d,
        keys.alternative_provider_name,
        keys.current_cost_7d_usd,
        keys.alternative_cost_7d_usd,
        keys.used_uptime_last_1d,
        keys.alternative_uptime_last_1d,
        case when keys.pinned_gap_7d_usd > 0 then 'byok' end as pinned_reason,
        keys.pinned_gap_7d_usd / windows.loaded_days_7d * 30 as pinned_monthly_gap_usd
    from spread_keys as keys
    inner join windows using (usage_date)
    where keys.counted_gap_7d_usd > 0 or keys.pinned_gap_7d_usd > 0
),

---------- premium_vs_standard

workflow_models as (
    select
        build_days.usage_date,
        generations.project,
        generations.workflow,
        models.model_permaslug,
        generations.served_model as model,
        models.is_premium,
        count(*) as logged_requests_7d,
        count(*) filter (where generations.is_accepted is not null and generations.cost_usd is not null)
            as requests_7d,
        count(*) filter (where generations.is_accepted and generations.cost_usd is not null) as accepted_7d,
        -- BYOK requests cost their provider bill besides the credits fee.
        marts.exact_sum(case when generations.is_accepted is not null
            then generations.cost_usd + coalesce(generations.byok_cost_usd, 0) end) as cost_7d_usd
    from build_days
    inner join marts.fct_generations as generations
        on generations.usage_date between build_days.usage_date - 6 and build_days.usage_date
    inner join marts.dim_model as models
        on models.model = generations.served_model
    where generations.workflow is not null
        and not ends_with(generations.served_model, ':free')
        and not models.is_router
    group by build_days.usage_date, generations.project, generations.workflow, models.model_permaslug,
        generations.served_model, models.is_premium
),

standard_choices as (
    select
        usage_date, project, workflow,
        arg_max(model_permaslug, requests_7d) as model_permaslug,
        arg_max(logged_requests_7d, requests_7d) as logged_requests_7d,
        max(requests_7d) as requests_7d,
        arg_max(accepted_7d, requests_7d) as accepted_7d,
        arg_max(cost_7d_usd, requests_7d) as cost_7d_usd
    from workflow_models
    where not is_premium and accepted_7d > 0
    group by usage_date, project, workflow
),

-- Wilson score interval at 95% (z = 1.96) for each acceptance rate.
premium_pairs as (
    select
        premium.usage_date,
        premium.project,
        premium.workflow,
        premium.model_permaslug,
        premium.model,
        standard.model_permaslug as standard_model_permaslug,
        premium.requests_7d as premium_requests_7d,
        premium.accepted_7d as premium_accepted_7d,
        standard.requests_7d as standard_requests_7d,
        standard.accepted_7d as standard_accepted_7d,
        premium.cost_7d_usd as premium_cost_7d_usd,
        standard.cost_7d_usd as standard_cost_7d_usd,
        (premium.requests_7d + standard.requests_7d)
            / (premium.logged_requests_7d + standard.logged_requests_7d) as verdict_coverage,
        premium.accepted_7d / premium.requests_7d as premium_acceptance_rate,
        standard.accepted_7d / standard.requests_7d as standard_acceptance_rate,
        marts.wilson_bound(
            premium.accepted_7d / premium.requests_7d, premium.requests_7d, 1.96, -1
        ) as premium_acceptance_ci_low,
        marts.wilson_bound(
            premium.accepted_7d / premium.requests_7d, premium.requests_7d, 1.96, 1
        ) as premium_acceptance_ci_high,
        marts.wilson_bound(
            standard.accepted_7d / standard.requests_7d, standard.requests_7d, 1.96, -1
        ) as standard_acceptance_ci_low,
        marts.wilson_bound(
            standard.accepted_7d / standard.requests_7d, standard.requests_7d, 1.96, 1
        ) as standard_acceptance_ci_high
    from workflow_models as premium
    inner join standard_choices as standard using (usage_date, project, workflow)
    where premium.is_premium and premium.accepted_7d > 0
),

premium_savings as (
    select
        pairs.*,
        windows.loaded_days_7d,
        pairs.premium_cost_7d_usd / pairs.premium_accepted_7d as premium_cost_per_accepted_usd,
        pairs.standard_cost_7d_usd / pairs.standard_accepted_7d as standard_cost_per_accepted_usd,
        -- What the premium model's accepted results would cost at the standard model's cost per accepted result.
        pairs.premium_accepted_7d * pairs.standard_cost_7d_usd / pairs.standard_requests_7d
            / pairs.standard_acceptance_rate as alternative_cost_7d_usd,
        pairs.premium_accepted_7d * pairs.standard_cost_7d_usd / pairs.standard_requests_7d
            / pairs.standard_acceptance_ci_low as alternative_cost_high_7d_usd,
        pairs.premium_accepted_7d * pairs.standard_cost_7d_usd / pairs.standard_requests_7d
            / pairs.standard_acceptance_ci_high as alternative_cost_low_7d_usd
    from premium_pairs as pairs
    inner join windows using (usage_date)
    where pairs.standard_acceptance_rate >= pairs.premium_acceptance_rate - 0.05
),

project_owners as (
    select usage_date, project, any_value(team) as team, any_value(budget_owner) as budget_owner
    from spend
    group by usage_date, project
),

premium_vs_standard as (
    select
        savings.usage_date,
        savings.project,
        owners.team,
        owners.budget_owner,
        'premium_vs_standard' as opportunity_kind,
        null::varchar as api_key_hash,
        savings.model_permaslug,
        savings.model,
        savings.workflow,
        savings.standard_model_permaslug as alternative_model_permaslug,
        (savings.premium_cost_7d_usd - savings.alternative_cost_7d_usd) / savings.loaded_days_7d * 30
            as monthly_saving_usd,
        greatest(0, savings.premium_cost_7d_usd - savings.alternative_cost_high_7d_usd)
            / savings.loaded_days_7d * 30 as monthly_saving_low_usd,
        greatest(0, savings.premium_cost_7d_usd - savings.alternative_cost_low_7d_usd)
            / savings.loaded_days_7d * 30 as monthly_saving_high_usd,
        'estimate' as bound_kind,
        format('workflow {}: {} accepted {:.1f}% of {} request(s) at ${:.4f} per accepted result, {} accepted '
               || '{:.1f}% (95% interval {:.1f}-{:.1f}%) of {} at ${:.4f}, within 5 points: the premium cost less '
               || 'its accepted results at the standard cost per accepted result, over {} loaded day(s) of the 7 '
               || 'ending this day x 30', savings.workflow, savings.model, 100 * savings.premium_acceptance_rate,
               savings.premium_requests_7d, savings.premium_cost_per_accepted_usd, savings.standard_model_permaslug,
               100 * savings.standard_acceptance_rate, 100 * savings.standard_acceptance_ci_low,
               100 * savings.standard_acceptance_ci_high, savings.standard_requests_7d,
               savings.standard_cost_per_accepted_usd, savings.loaded_days_7d) as basis,
        savings.loaded_days_7d,
        savings.premium_cost_7d_usd as current_cost_7d_usd,
        savings.alternative_cost_7d_usd,
        savings.verdict_coverage,
        savings.premium_requests_7d,
        savings.premium_accepted_7d,
        savings.standard_requests_7d,
        savings.standard_accepted_7d,
        savings.premium_acceptance_rate,
        savings.premium_acceptance_ci_low,
        savings.premium_acceptance_ci_high,
        savings.standard_acceptance_rate,
        savings.standard_acceptance_ci_low,
        savings.standard_acceptance_ci_high,
        savings.premium_cost_per_accepted_usd,
        savings.standard_cost_per_accepted_usd
    from premium_savings as savings
    left join project_owners as owners using (usage_date, project)
    where savings.standard_cost_per_accepted_usd < savings.premium_cost_per_accepted_usd
),

final as (
    select * from prompt_caching
    union all by name
    select * from price_change
    union all by name
    select * from provider_price_spread
    union all by name
    select * from premium_vs_standard
)

select * from final
where monthly_saving_usd >= 0.01 or pinned_monthly_gap_usd >= 0.01
