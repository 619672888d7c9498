-- fct_generations: every generation (request) an application logged, with how it was served (attempts,
-- provider / model / BYOK fallbacks), what it cost, what the same tokens would have cost at the requested
-- model's price that day, whether the application accepted it, and whether it was waste.
-- Grain: generation_id. Key: generation_id (an id logged more than once is kept once: the line with
--   openrouter_metadata, then with usage, then from the most recently loaded file).
-- Upstream: staging.stg_request_log, staging.stg_generations (/generation records, enrichment status),
--   marts.fct_daily_spend (the project of the key that day, or the latest day before; the /activity cells
--   costs are allocated from), staging.stg_keys (key names of ids discovered through analytics),
--   intermediate.int_model_price_daily (prices of the requested model).
-- Partition: usage_date; builds the days in getvariable('mart_days') and reads the day before for duplicates.
-- Detail: openrouter_metadata when the application logged it (zero API calls), else the /generation record;
--   without either the fallback flags and fallback_kind are NULL (unknown), never false. Classification macros
--   live in sql/migrations/004 (openrouter_spend.fallbacks documents the rules).
-- Sampling: sampling_weight = logged ÷ classified requests of the generation's stratum (day × project or key
--   × requested model × whether metadata was logged) for classified rows (is_fallback known), NULL otherwise
--   (not sampled, pending, unavailable); marts downstream estimate with it.
-- Cost: measured when the /generation record (cost_source 'generation') or the logged response usage
--   ('log_usage') gives it (is_cost_measured). A request without a measured cost is allocated from /activity,
--   which reports credits (usage) and BYOK (byok_usage_inference) per key × model × provider × day (a cell):
--   'allocated' = its cell's spend less the cell's measured requests, spread over the cell's requests without
--   a measured cost (the logged ones, or the cell's request count when more: partial logs never exceed the
--   cell, complete logs add up to it exactly); requests that cannot be placed in a cell (served model or
--   provider unknown) share what the key's cells leave that day ('allocated_key', weighted by what the
--   requested model's cells leave per request), then what the project's activity leaves ('allocated_project');
--   the same for byok_cost_usd from the BYOK column. Only a request with no activity to allocate from gets
--   its stratum's (else its requested model's) mean measured cost ('imputed'); 'unknown' (NULL) otherwise.
-- Waste: failed (finish_reason error), cancelled, retry (retry_of set), duplicate (same key or project,
--   workflow and request_fingerprint as a request less than an hour earlier); the first that applies.
with
build_days as (
    select usage_date from marts.build_days()
),

bounds as (
    select first_day, last_day from marts.build_bounds(1)
),

window_ids as (
    select distinct generation_id
    from staging.stg_request_log
    where usage_date between (select first_day from bounds) and (select last_day from bounds)
),

-- The line kept for each id, whichever day it was logged on (narrow, so the choice stays cheap).
chosen as (
    select
        generation_id,
        arg_max(log_row, (openrouter_metadata is not null, usage is not null, loaded_at, source_file, created_at))
            as log_row
    from staging.stg_request_log
    semi join window_ids using (generation_id)
    group by generation_id
),

logged as (
    select request_log.* exclude (log_row)
    from staging.stg_request_log as request_log
    inner join chosen using (log_row)
),

key_projects as (
    select distinct usage_date, api_key_hash, project
    from marts.fct_daily_spend
    where api_key_hash <> '(unattributed)'
),

named_keys as (
    select api_key_name, any_value(api_key_hash) as api_key_hash
    from staging.stg_keys
    where api_key_name is not null
    group by api_key_name
    having count(*) = 1
),

attributed as (
    select
        logged.*,
        coalesce(logged.api_key_hash, named_keys.api_key_hash) as resolved_api_key_hash
    from logged
    left join named_keys
        on logged.api_key_hash is null and logged.extra_fields is not null
        and named_keys.api_key_name = logged.extra_fields ->> 'api_key_name'
),

-- The owner of each key on each day it logged (as of that day or the latest day before), found for the
-- few distinct key-days, then joined back.
key_day_projects as (
    select key_days.api_key_hash, key_days.usage_date, owner.project as key_project
    from (select distinct resolved_api_key_hash as api_key_hash, usage_date from attributed
          where resolved_api_key_hash is not null) as key_days
    asof left join key_projects as owner
        on key_days.api_key_hash = owner.api_key_hash
        and key_days.usage_date >= owner.usage_date
),

with_project as (
    select
        attributed.*,
        key_day_projects.key_project
    from attributed
    left join key_day_projects
        on attributed.resolved_api_key_hash = key_day_projects.api_key_hash
        and attributed.usage_date = key_day_projects.usage_date
),

-- Each JSON payload is parsed once, into what the columns below read.
detailed as (
    select
        with_project.generation_id,
        with_project.created_at,
        with_project.usage_date,
        with_project.project,
        with_project.api_key_hash,
        with_project.requested_model,
        with_project.workflow,
        with_project.accepted,
        with_project.retry_of,
        with_project.request_fingerprint,
        with_project.source_file,
        with_project.resolved_api_key_hash,
        with_project.key_project,
        with_project.openrouter_metadata is not null as has_metadata,
        coalesce(with_project.requested_model, with_project.requested_models[1],
                 json_extract_string(with_project.openrouter_metadata, '$.requested')) as effective_requested_model,
        marts.parse_metadata(with_project.openrouter_metadata) as m,
        marts.parse_usage(with_project.usage) as u,
        marts.parse_generation(generations.payload) as g,
        generations.queue_status
    from with_project
    left join staging.stg_generations as generations using (generation_id)
),

resolved as (
    select
        *,
        case
            when has_metadata then 'openrouter_metadata'
            when g is not null then 'generation'
            else 'none'
        end as detail_source,
        marts.request_attempts(m, g) as attempt_list,
        m.attempt as attempt_number,
        marts.request_served_model(m, g) as served_model,
        marts.request_served_provider(m, g) as served_provider,
        marts.is_router_choice(effective_requested_model, m.strategy, g.router) as is_router_choice
    from detailed
),

typed as (
    select
        generation_id,
        created_at,
        usage_date,
        coalesce(key_project, project, '(unattributed)') as project,
        workflow,
        resolved_api_key_hash,
        effective_requested_model,
        served_model,
        served_provider,
        detail_source,
        case
            when has_metadata then 'not_needed'
            when g is not null then 'fetched'
            else coalesce(queue_status, 'not_planned')
        end as enrichment_status,
        marts.sampling_stratum(project, api_key_hash, requested_model, has_metadata) as sampling_stratum,
        marts.attempt_count(attempt_list, attempt_number) as attempts,
        marts.is_provider_fallback(attempt_list, attempt_number) as is_provider_fallback,
        marts.is_model_fallback(attempt_list, attempt_number, effective_requested_model, served_model,
                                is_router_choice) as is_model_fallback,
        marts.is_byok_fallback(attempt_list, attempt_number) as is_byok_fallback,
        coalesce(g.total_cost, u.cost) as known_cost_usd,
        case when g.total_cost is not null then 'generation' when u.cost is not null then 'log_usage' end
            as known_cost_source,
        coalesce(g.is_byok, u.is_byok, m.is_byok) as is_byok,
        coalesce(g.upstream_inference_cost, u.cost_details.upstream_inference_cost) as upstream_cost_usd,
        coalesce(g.native_tokens_prompt, u.prompt_tokens) as prompt_tokens,
        coalesce(g.native_tokens_completion, u.completion_tokens) as completion_tokens,
        coalesce(g.native_tokens_cached, u.prompt_tokens_details.cached_tokens) as cached_tokens,
        g.finish_reason,
        g.cancelled as is_cancelled,
        accepted,
        retry_of,
        request_fingerprint,
        source_file
    from resolved
),

-- Materialised: the statistics below read it three times and the JSON above must be parsed only once.
classified as materialized (
    select
        *,
        is_provider_fallback or is_model_fallback or is_byok_fallback as is_fallback
    from typed
),

-- ---------- cost allocation from /activity cells ----------

-- What /activity says a key spent on one model and provider that day, credits and BYOK apart.
activity_cells as (
    select
        usage_date,
        api_key_hash,
        marts.base_model_id(model) as cell_model,
        provider_name,
        sum(requests) as cell_requests,
        marts.exact_sum(spend_usd) as cell_usd,
        marts.exact_sum(byok_spend_usd) as cell_byok_usd
    from marts.fct_daily_spend
    where api_key_hash <> '(unattributed)'
        and usage_date between (select first_day from bounds) and (select last_day from bounds)
    group by all
),

cost_requests as (
    select
        classified.generation_id,
        classified.usage_date,
        classified.project,
        classified.resolved_api_key_hash as api_key_hash,
        marts.base_model_id(classified.effective_requested_model) as requested_cell_model,
        classified.known_cost_usd,
        case when classified.known_cost_usd is not null
            then coalesce(case when classified.is_byok then classified.upstream_cost_usd end, 0)
        end as known_byok_usd,
        activity_cells.cell_model,
        activity_cells.provider_name as cell_provider
    from classified
    left join activity_cells
        on activity_cells.usage_date = classified.usage_date
        and activity_cells.api_key_hash = classified.resolved_api_key_hash
        and activity_cells.cell_model = marts.base_model_id(classified.served_model)
        and activity_cells.provider_name = classified.served_provider
),

cell_claims as (
    select
        usage_date,
        api_key_hash,
        cell_model,
        cell_provider as provider_name,
        count(known_cost_usd) as measured_requests,
        coalesce(marts.exact_sum(known_cost_usd), 0) as measured_usd,
        coalesce(marts.exact_sum(known_byok_usd), 0) as measured_byok_usd,
        count(*) - count(known_cost_usd) as claimants
    from cost_requests
    where cell_model is not null
    group by all
),

-- Each cell: the share of its remainder per unmeasured request it holds, and what it leaves for its key.
cell_allocation as (
    select
        *,
        case when claimants > 0 then remainder_usd / greatest(open_requests, claimants) end as share_usd,
        case when claimants > 0 then remainder_byok_usd / greatest(open_requests, claimants) end as share_byok_usd,
        greatest(open_requests - claimants, 0) as left_requests,
        remainder_usd * greatest(open_requests - claimants, 0) / greatest(open_requests, claimants, 1) as left_usd,
        remainder_byok_usd * greatest(open_requests - claimants, 0) / greatest(open_requests, claimants, 1)
            as left_byok_usd
    from (
        select
            activity_cells.*,
            coalesce(cell_claims.claimants, 0) as claimants,
            greatest(activity_cells.cell_requests - coalesce(cell_claims.measured_requests, 0), 0) as open_requests,
            greatest(activity_cells.cell_usd - coalesce(cell_claims.measured_usd, 0), 0) as remainder_usd,
            greatest(activity_cells.cell_byok_usd - coalesce(cell_claims.measured_byok_usd, 0), 0)
                as remainder_byok_usd
        from activity_cells
        left join cell_claims using (usage_date, api_key_hash, cell_model, provider_name)
    ) as cells
),

-- What each key's cells leave that day, less the measured requests that fit no cell.
key_pools as (
    select
        cells.usage_date,
        cells.api_key_hash,
        greatest(cells.left_requests - coalesce(stray.requests, 0), 0) as open_requests,
        greatest(cells.left_usd - coalesce(stray.usd, 0), 0) as pool_usd,
        greatest(cells.left_byok_usd - coalesce(stray.byok_usd, 0), 0) as pool_byok_usd,
        cells.left_usd / nullif(cells.left_requests, 0) as mean_left_usd
    from (
        select usage_date, api_key_hash, sum(left_requests) as left_requests,
            marts.exact_sum(left_usd) as left_usd, marts.exact_sum(left_byok_usd) as left_byok_usd
        from cell_allocation
        group by all
    ) as cells
    left join (
        select usage_date, api_key_hash, count(*) as requests,
            marts.exact_sum(known_cost_usd) as usd, marts.exact_sum(known_byok_usd) as byok_usd
        from cost_requests
        where cell_model is null and known_cost_usd is not null
        group by all
    ) as stray using (usage_date, api_key_hash)
),

key_model_rates as (
    select usage_date, api_key_hash, cell_model, sum(left_usd) / nullif(sum(left_requests), 0) as rate_usd
    from cell_allocation
    group by all
),

key_claims as (
    select
        requests.generation_id,
        requests.usage_date,
        requests.api_key_hash,
        coalesce(nullif(rates.rate_usd, 0), nullif(key_pools.mean_left_usd, 0), 1.0) as weight
    from cost_requests as requests
    inner join key_pools using (usage_date, api_key_hash)
    left join key_model_rates as rates
        on rates.usage_date = requests.usage_date
        and rates.api_key_hash = requests.api_key_hash
        and rates.cell_model = requests.requested_cell_model
    where requests.cell_model is null and requests.known_cost_usd is null
),

-- Claims are scaled to the pool when they cover every open request (complete logs), else never above it.
key_allocation as (
    select
        key_claims.generation_id,
        key_claims.weight * case
            when totals.claimants >= key_pools.open_requests then key_pools.pool_usd / totals.weights
            else least(1.0, key_pools.pool_usd / totals.weights)
        end as allocated_usd,
        key_pools.pool_byok_usd / greatest(key_pools.open_requests, totals.claimants) as allocated_byok_usd
    -- The subquery below reads key_claims too (sqlfluff takes it for a second alias).
    from key_claims  -- noqa: AL04
    inner join key_pools using (usage_date, api_key_hash)
    inner join (
        select usage_date, api_key_hash, count(*) as claimants, sum(weight) as weights
        from key_claims
        group by all
    ) as totals using (usage_date, api_key_hash)
),

cell_and_key_costs as (
    select
        requests.generation_id,
        requests.usage_date,
        requests.project,
        requests.known_cost_usd,
        requests.known_byok_usd,
        coalesce(cell.share_usd, keyed.allocated_usd) as allocated_usd,
        coalesce(cell.share_byok_usd, keyed.allocated_byok_usd) as allocated_byok_usd,
        case
            when requests.known_cost_usd is not null then null
            when cell.share_usd is not null then 'allocated'
            when keyed.allocated_usd is not null then 'allocated_key'
        end as allocation
    from cost_requests as requests
    left join cell_allocation as cell
        on requests.known_cost_usd is null
        and cell.usage_date = requests.usage_date
        and cell.api_key_hash = requests.api_key_hash
        and cell.cell_model = requests.cell_model
        and cell.provider_name = requests.cell_provider
    left join key_allocation as keyed using (generation_id)
),

-- Requests no key of theirs accounts for (no key logged, or no activity for it) share what the project's
-- activity leaves after everything above.
project_pools as (
    select
        activity.usage_date,
        activity.project,
        greatest(activity.requests - coalesce(held.requests, 0), 0) as open_requests,
        greatest(activity.usd - coalesce(held.usd, 0), 0) as pool_usd,
        greatest(activity.byok_usd - coalesce(held.byok_usd, 0), 0) as pool_byok_usd
    from (
        select usage_date, project, sum(requests) as requests, marts.exact_sum(spend_usd) as usd,
            marts.exact_sum(byok_spend_usd) as byok_usd
        from marts.fct_daily_spend
        where usage_date between (select first_day from bounds) and (select last_day from bounds)
        group by all
    ) as activity
    left join (
        select usage_date, project,
            count(*) filter (where known_cost_usd is not null or allocation is not null) as requests,
            marts.exact_sum(coalesce(known_cost_usd, allocated_usd)) as usd,
            marts.exact_sum(coalesce(known_byok_usd, allocated_byok_usd)) as byok_usd
        from cell_and_key_costs
        group by all
    ) as held using (usage_date, project)
),

allocated_costs as (
    select
        costs.generation_id,
        coalesce(costs.allocated_usd, project_pools.pool_usd / greatest(project_pools.open_requests, claims.claimants))
            as allocated_usd,
        coalesce(costs.allocated_byok_usd,
                 project_pools.pool_byok_usd / greatest(project_pools.open_requests, claims.claimants))
            as allocated_byok_usd,
        coalesce(costs.allocation, case when project_pools.project is not null then 'allocated_project' end)
            as allocation
    from cell_and_key_costs as costs
    left join project_pools
        on costs.known_cost_usd is null
        and costs.allocation is null
        and project_pools.usage_date = costs.usage_date
        and project_pools.project = costs.project
    left join (
        select usage_date, project, count(*) as claimants
        from cell_and_key_costs
        where known_cost_usd is null and allocation is null
        group by all
    ) as claims
        on claims.usage_date = costs.usage_date
        and claims.project = costs.project
    where costs.known_cost_usd is null
),

strata as (
    select
        usage_date,
        sampling_stratum,
        count(*) as stratum_requests,
        count(*) filter (where is_fallback is not null) as stratum_classified_requests,
        cast(sum(cast(known_cost_usd as decimal(38, 12))) as double) / count(known_cost_usd) as stratum_mean_cost_usd
    from classified
    group by usage_date, sampling_stratum
),

model_costs as (
    select
        usage_date,
        effective_requested_model,
        cast(sum(cast(known_cost_usd as decimal(38, 12))) as double) / count(known_cost_usd) as model_mean_cost_usd
    from classified
    group by usage_date, effective_requested_model
),

-- A duplicate is a request whose key (or project), workflow and fingerprint repeat within the hour.
repeats as (
    select
        generation_id,
        created_at - lag(created_at) over (
            partition by coalesce(resolved_api_key_hash, project, ''), workflow, request_fingerprint
            order by created_at, generation_id
        ) <= interval 1 hour as is_duplicate
    from classified
    where request_fingerprint is not null
),

first_prices as (
    select model, cache_read_price_per_mtok_usd from intermediate.int_model_price_daily
    where in_force_from = '-infinity'::date
),

-- The requested model's prices that apply to the day (intermediate.int_model_price_daily). A version without
-- a cache-read price falls back to the model's first version's, then to the prompt price.
model_prices as (
    select
        model_days.usage_date,
        model_days.effective_requested_model,
        prices.prompt_price_per_mtok_usd as requested_prompt_price,
        prices.completion_price_per_mtok_usd as requested_completion_price,
        coalesce(prices.cache_read_price_per_mtok_usd, first_prices.cache_read_price_per_mtok_usd,
                 prices.prompt_price_per_mtok_usd) as requested_cache_read_price
    from (select distinct usage_date, effective_requested_model from classified) as model_days
    left join intermediate.int_model_price_daily as prices
        on model_days.effective_requested_model = prices.model
        and model_days.usage_date >= prices.in_force_from
        and (prices.in_force_to is null or model_days.usage_date < prices.in_force_to)
    left join first_prices
        on model_days.effective_requested_model = first_prices.model
),

priced as (
    select
        classified.*,
        strata.stratum_requests,
        strata.stratum_classified_requests,
        strata.stratum_mean_cost_usd,
        model_costs.model_mean_cost_usd,
        allocated_costs.allocated_usd,
        allocated_costs.allocated_byok_usd,
        allocated_costs.allocation,
        coalesce(repeats.is_duplicate, false) as is_duplicate,
        model_prices.requested_prompt_price,
        model_prices.requested_completion_price,
        model_prices.requested_cache_read_price
    from classified
    inner join strata using (usage_date, sampling_stratum)
    left join model_costs using (usage_date, effective_requested_model)
    left join allocated_costs using (generation_id)
    left join model_prices using (usage_date, effective_requested_model)
    left join repeats using (generation_id)
    semi join build_days using (usage_date)
),

final as (
    select
        ---------- keys
        generation_id,
        created_at,
        usage_date,
        ---------- who asked
        project,
        workflow,
        resolved_api_key_hash as api_key_hash,
        ---------- how it was served
        effective_requested_model as requested_model,
        served_model,
        served_provider as provider_name,
        attempts,
        is_fallback,
        marts.fallback_kind(is_provider_fallback, is_model_fallback, is_byok_fallback) as fallback_kind,
        is_provider_fallback,
        is_model_fallback,
        is_byok_fallback,
        detail_source,
        enrichment_status,
        ---------- sampling
        sampling_stratum,
        case when is_fallback is not null then stratum_requests / stratum_classified_requests end
            as sampling_weight,
        ---------- money (USD) and tokens
        coalesce(known_cost_usd, allocated_usd, stratum_mean_cost_usd, model_mean_cost_usd) as cost_usd,
        coalesce(known_cost_source, allocation,
                 case when coalesce(stratum_mean_cost_usd, model_mean_cost_usd) is not null then 'imputed' end,
                 'unknown') as cost_source,
        known_cost_usd is not null as is_cost_measured,
        is_byok,
        case
            when known_cost_usd is not null then case when is_byok then upstream_cost_usd end
            else allocated_byok_usd
        end as byok_cost_usd,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        (greatest(prompt_tokens - coalesce(cached_tokens, 0), 0) * requested_prompt_price
            + least(coalesce(cached_tokens, 0), prompt_tokens) * requested_cache_read_price
            + completion_tokens * requested_completion_price) / 1e6 as requested_price_cost_usd,
        -- rounded to 1e-10 USD: a same-price provider fallback is exactly 0, not float noise around it
        case when is_fallback then round(
            known_cost_usd + coalesce(case when is_byok then upstream_cost_usd end, 0)
            - (greatest(prompt_tokens - coalesce(cached_tokens, 0), 0) * requested_prompt_price
               + least(coalesce(cached_tokens, 0), prompt_tokens) * requested_cache_read_price
               + completion_tokens * requested_completion_price) / 1e6, 10)
        end as fallback_extra_cost_usd,
        ---------- outcome and waste
        accepted as is_accepted,
        finish_reason,
        is_cancelled,
        retry_of,
        request_fingerprint,
        case
            when finish_reason = 'error' then 'failed'
            when is_cancelled then 'cancelled'
            when retry_of is not null then 'retry'
            when is_duplicate then 'duplicate'
        end as waste_kind,
        coalesce(finish_reason = 'error' or is_cancelled or retry_of is not null or is_duplicate, false) as is_wasted,
        ---------- lineage
        source_file
    from priced
)

select * from final
