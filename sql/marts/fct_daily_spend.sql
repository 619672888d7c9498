-- fct_daily_spend: spend per key, model and serving provider per UTC day, with ownership and the premium
-- flag resolved with the configuration version and the model prices in force on that day.
-- Grain: usage_date × api_key_hash × model_permaslug × provider_name. Key: the same four columns.
-- Upstream: staging.stg_activity (per key), staging.stg_account_activity (spend no listed key accounts
--   for becomes api_key_hash '(unattributed)'), staging.stg_key_snapshots, staging.stg_keys,
--   staging.stg_workspaces, intermediate.int_model_price_daily, config.config_versions, config.key_matchers,
--   config.projects, config.premium_rules, config.premium_model_lists.
-- Partition: usage_date; builds the days in getvariable('mart_days').
-- A paid model and its ':free' variant served by the same provider share a permaslug and merge into one
-- row; `model` is then the paid id (the free part has no spend).
with
build_days as (
    select usage_date from marts.build_days()
),

-- The days as a constant list (getvariable folds at bind time), not a join with build_days: the filter then
-- reaches raw.activity's scan, where a join would leave the views' deduplication to type every day ever loaded.
key_activity as (
    select activity.*
    from staging.stg_activity as activity
    where list_contains(getvariable('mart_days'), activity.usage_date)
),

account_activity as (
    select activity.*
    from staging.stg_account_activity as activity
    where list_contains(getvariable('mart_days'), activity.usage_date)
),

key_rows as (
    select
        usage_date,
        api_key_hash,
        model_permaslug,
        provider_name,
        min(model) as model,
        sum(requests) as requests,
        sum(byok_requests) as byok_requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(cached_tokens) as cached_tokens,
        marts.exact_sum(usage_usd) as spend_usd,
        marts.exact_sum(byok_usage_usd) as byok_spend_usd
    from key_activity
    group by usage_date, api_key_hash, model_permaslug, provider_name
),

account_rows as (
    select
        usage_date,
        model_permaslug,
        provider_name,
        min(model) as model,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(cached_tokens) as cached_tokens,
        marts.exact_sum(usage_usd) as spend_usd,
        marts.exact_sum(byok_usage_usd) as byok_spend_usd
    from account_activity
    group by usage_date, model_permaslug, provider_name
),

key_totals as (
    select
        usage_date,
        model_permaslug,
        provider_name,
        sum(requests) as requests,
        sum(prompt_tokens) as prompt_tokens,
        sum(completion_tokens) as completion_tokens,
        sum(reasoning_tokens) as reasoning_tokens,
        sum(cached_tokens) as cached_tokens,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(byok_spend_usd) as byok_spend_usd
    from key_rows
    group by usage_date, model_permaslug, provider_name
),

-- Spend the account saw but no listed key did (keys deleted before the snapshot, for example).
unattributed_rows as (
    select
        account.usage_date,
        '(unattributed)' as api_key_hash,
        account.model_permaslug,
        account.provider_name,
        account.model,
        greatest(account.requests - coalesce(keys.requests, 0), 0) as requests,
        null::bigint as byok_requests,
        greatest(account.prompt_tokens - coalesce(keys.prompt_tokens, 0), 0) as prompt_tokens,
        greatest(account.completion_tokens - coalesce(keys.completion_tokens, 0), 0) as completion_tokens,
        greatest(account.reasoning_tokens - coalesce(keys.reasoning_tokens, 0), 0) as reasoning_tokens,
        greatest(account.cached_tokens - coalesce(keys.cached_tokens, 0), 0) as cached_tokens,
        greatest(account.spend_usd - coalesce(keys.spend_usd, 0), 0) as spend_usd,
        greatest(account.byok_spend_usd - coalesce(keys.byok_spend_usd, 0), 0) as byok_spend_usd
    from account_rows as account
    left join key_totals as keys using (usage_date, model_permaslug, provider_name)
    where account.requests > coalesce(keys.requests, 0)
        or account.spend_usd - coalesce(keys.spend_usd, 0) > 1e-9
        or account.byok_spend_usd - coalesce(keys.byok_spend_usd, 0) > 1e-9
),

spend_rows as (
    select * from key_rows
    union all by name
    select * from unattributed_rows
),

day_versions as (
    select
        build_days.usage_date,
        versions.config_version_id
    from build_days
    inner join config.config_versions as versions
        on build_days.usage_date >= versions.effective_from
        and (versions.effective_to is null or build_days.usage_date < versions.effective_to)
),

-- The key as the snapshot of that day (or the newest earlier one, else its newest known state) saw it.
key_days as (
    select distinct usage_date, api_key_hash from spend_rows
),

-- Which snapshot that is is found on the snapshots' keys alone (no JSON is parsed for it), so only the
-- snapshots used are parsed. Only the snapshots of the keys that spent are joined: the asof join sorts its
-- right side, and every key ever listed is 0.18 s of it at 365 days of 2,000 keys, 200 of them in use.
key_snapshot_days as (
    select
        key_days.usage_date,
        key_days.api_key_hash,
        listed.snapshot_date
    from key_days
    asof left join (
        select snapshot_date, api_key_hash
        from staging.stg_key_snapshots
        where api_key_hash in (select api_key_hash from key_days)
    ) as listed
        on key_days.api_key_hash = listed.api_key_hash
        and key_days.usage_date >= listed.snapshot_date
),

key_attributes as (
    select
        key_snapshot_days.usage_date,
        key_snapshot_days.api_key_hash,
        coalesce(snapshot.api_key_name, latest.api_key_name) as api_key_name,
        coalesce(snapshot.workspace_id, latest.workspace_id) as workspace_id
    from key_snapshot_days
    left join staging.stg_key_snapshots as snapshot
        on key_snapshot_days.api_key_hash = snapshot.api_key_hash
        and key_snapshot_days.snapshot_date = snapshot.snapshot_date
    left join staging.stg_keys as latest
        on key_snapshot_days.api_key_hash = latest.api_key_hash
),

named_keys as (
    select
        key_attributes.*,
        workspaces.workspace_name,
        day_versions.config_version_id
    from key_attributes
    inner join day_versions using (usage_date)
    left join staging.stg_workspaces as workspaces using (workspace_id)
),

-- Precedence: key hash, then key-name glob (most literal characters first), then workspace; file order
-- breaks ties. A matcher only applies inside its optional valid_from/valid_to range.
owner_candidates as (
    select
        named_keys.usage_date,
        named_keys.api_key_hash,
        matchers.project,
        matchers.match_kind,
        row_number() over (
            partition by named_keys.usage_date, named_keys.api_key_hash
            order by matchers.kind_rank, matchers.specificity desc, matchers.file_order
        ) as precedence
    from named_keys
    inner join config.key_matchers as matchers
        on matchers.config_version_id = named_keys.config_version_id
        and (matchers.valid_from is null or named_keys.usage_date >= matchers.valid_from)
        and (matchers.valid_to is null or named_keys.usage_date <= matchers.valid_to)
        and case matchers.match_kind
            when 'key_hash' then named_keys.api_key_hash = matchers.pattern
            when 'key_name' then named_keys.api_key_name glob matchers.pattern
            when 'workspace' then matchers.pattern in (named_keys.workspace_id, named_keys.workspace_name)
        end
),

owned_keys as (
    select
        named_keys.*,
        owners.project,
        owners.match_kind as owner_match_kind,
        projects.team,
        projects.budget_owner
    from named_keys
    left join owner_candidates as owners
        on named_keys.usage_date = owners.usage_date
        and named_keys.api_key_hash = owners.api_key_hash
        and owners.precedence = 1
    left join config.projects as projects
        on projects.config_version_id = named_keys.config_version_id
        and projects.project = owners.project
),

-- The prices that apply to the day (intermediate.int_model_price_daily).
model_days as (
    select distinct spend_rows.usage_date, spend_rows.model, spend_rows.model_permaslug, day_versions.config_version_id
    from spend_rows
    inner join day_versions using (usage_date)
),

priced_models as (
    select
        model_days.*,
        prices.prompt_price_per_mtok_usd,
        prices.completion_price_per_mtok_usd,
        prices.is_router_price
    from model_days
    left join intermediate.int_model_price_daily as prices
        on model_days.model = prices.model
        and model_days.usage_date >= prices.in_force_from
        and (prices.in_force_to is null or model_days.usage_date < prices.in_force_to)
),

listed_models as (
    select
        priced_models.usage_date,
        priced_models.model,
        coalesce(bool_or(lists.is_premium), false) as is_listed_premium,
        coalesce(bool_or(not lists.is_premium), false) as is_listed_never_premium
    from priced_models
    left join config.premium_model_lists as lists
        on lists.config_version_id = priced_models.config_version_id
        and (priced_models.model glob lists.model_pattern or priced_models.model_permaslug glob lists.model_pattern)
    group by priced_models.usage_date, priced_models.model
),

classified_models as (
    select
        priced_models.usage_date,
        priced_models.model,
        priced_models.prompt_price_per_mtok_usd,
        priced_models.completion_price_per_mtok_usd,
        marts.premium_reason(
            priced_models.model,
            priced_models.prompt_price_per_mtok_usd,
            priced_models.completion_price_per_mtok_usd,
            priced_models.is_router_price,
            listed_models.is_listed_premium,
            listed_models.is_listed_never_premium,
            rules.completion_price_threshold_per_mtok_usd,
            rules.blended_price_threshold_per_mtok_usd,
            rules.blended_prompt_weight,
            rules.blended_completion_weight
        ) as premium_reason
    from priced_models
    inner join listed_models using (usage_date, model)
    inner join config.premium_rules as rules
        on rules.config_version_id = priced_models.config_version_id
),

final as (
    select
        ---------- keys
        spend_rows.usage_date,
        spend_rows.api_key_hash,
        spend_rows.model_permaslug,
        spend_rows.provider_name,
        ---------- key and ownership
        owned_keys.api_key_name,
        owned_keys.workspace_id,
        owned_keys.workspace_name,
        coalesce(owned_keys.project, '(unowned)') as project,
        owned_keys.team,
        owned_keys.budget_owner,
        owned_keys.project is not null as is_owned,
        owned_keys.owner_match_kind,
        ---------- model
        spend_rows.model,
        classified.premium_reason in ('listed', 'completion_price', 'blended_price') as is_premium,
        classified.premium_reason,
        classified.prompt_price_per_mtok_usd,
        classified.completion_price_per_mtok_usd,
        ---------- volumes
        spend_rows.requests,
        spend_rows.byok_requests,
        spend_rows.prompt_tokens,
        spend_rows.completion_tokens,
        spend_rows.reasoning_tokens,
        spend_rows.cached_tokens,
        ---------- money (USD)
        spend_rows.spend_usd,
        spend_rows.byok_spend_usd,
        spend_rows.spend_usd + spend_rows.byok_spend_usd as total_spend_usd,
        ---------- lineage
        owned_keys.config_version_id
    from spend_rows
    inner join owned_keys using (usage_date, api_key_hash)
    inner join classified_models as classified using (usage_date, model)
)

select * from final
