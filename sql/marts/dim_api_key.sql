-- dim_api_key: every key ever seen, in its newest known state, with its current owner and whether it is
-- an unused seat.
-- Grain: api_key_hash. Key: api_key_hash.
-- Upstream: staging.stg_keys, staging.stg_workspaces, marts.fct_daily_spend (days with requests),
--   config.* (the current version: effective_to is NULL).
-- Rebuilt whole on every build. as_of_date = the newest /keys snapshot.
-- Unused seat: enabled (not disabled, not expired) and no usage for unused_key_days days (owners.yaml,
-- default 30), counting from the later of last_used_at (/keys) and the last day with activity; a key
-- never used counts from its creation, so a new key gets the same grace period.
with
current_version as (
    select config_version_id from config.config_versions where effective_to is null
),

as_of as (
    select max(last_seen_date) as as_of_date from staging.stg_keys
),

keys as (
    select
        keys.*,
        workspaces.workspace_name,
        (select as_of_date from as_of) as as_of_date,
        keys.last_seen_date = (select as_of_date from as_of) as is_listed
    from staging.stg_keys as keys
    left join staging.stg_workspaces as workspaces using (workspace_id)
),

owner_candidates as (
    select
        keys.api_key_hash,
        matchers.project,
        matchers.match_kind,
        row_number() over (
            partition by keys.api_key_hash
            order by matchers.kind_rank, matchers.specificity desc, matchers.file_order
        ) as precedence
    from keys
    inner join config.key_matchers as matchers
        on matchers.config_version_id = (select config_version_id from current_version)
        and (matchers.valid_from is null or keys.as_of_date >= matchers.valid_from)
        and (matchers.valid_to is null or keys.as_of_date <= matchers.valid_to)
        and case matchers.match_kind
            when 'key_hash' then keys.api_key_hash = matchers.pattern
            when 'key_name' then keys.api_key_name glob matchers.pattern
            when 'workspace' then matchers.pattern in (keys.workspace_id, keys.workspace_name)
        end
),

-- fct_daily_spend sums staging.stg_activity per key and day (already typed, unlike the raw JSON of every day).
activity as (
    select api_key_hash, max(usage_date) as last_activity_date
    from marts.fct_daily_spend
    where requests > 0
    group by api_key_hash
),

recent_spend as (
    select api_key_hash, marts.exact_sum(spend_usd) as spend_30d_usd
    from marts.fct_daily_spend
    where usage_date > (select as_of_date from as_of) - interval 30 day
    group by api_key_hash
),

settings as (
    select unused_key_days from config.settings
    where config_version_id = (select config_version_id from current_version)
),

assessed as (
    select
        keys.*,
        owners.project,
        owners.match_kind as owner_match_kind,
        projects.team,
        projects.budget_owner,
        activity.last_activity_date,
        coalesce(recent_spend.spend_30d_usd, 0) as spend_30d_usd,
        (select unused_key_days from settings) as unused_after_days,
        keys.as_of_date - greatest(
            cast(keys.last_used_at as date), activity.last_activity_date
        ) as days_since_last_use,
        keys.as_of_date - coalesce(
            greatest(cast(keys.last_used_at as date), activity.last_activity_date),
            cast(keys.created_at as date)
        ) as days_idle
    from keys
    left join owner_candidates as owners
        on keys.api_key_hash = owners.api_key_hash and owners.precedence = 1
    left join config.projects as projects
        on projects.config_version_id = (select config_version_id from current_version)
        and projects.project = owners.project
    left join activity on activity.api_key_hash = keys.api_key_hash
    left join recent_spend on recent_spend.api_key_hash = keys.api_key_hash
),

final as (
    select
        ---------- key
        api_key_hash,
        api_key_name,
        workspace_id,
        workspace_name,
        ---------- ownership (current configuration)
        coalesce(project, '(unowned)') as project,
        team,
        budget_owner,
        project is not null as is_owned,
        owner_match_kind,
        creator_user_id,
        ---------- state
        is_disabled,
        coalesce(is_expired, false) as is_expired,
        limit_usd,
        limit_reset,
        usage_usd,
        byok_usage_usd,
        created_at,
        expires_at,
        last_used_at,
        ---------- use
        last_activity_date,
        days_since_last_use,
        spend_30d_usd,
        not is_disabled and not coalesce(is_expired, false) and coalesce(days_idle >= unused_after_days, false)
            as is_unused,
        unused_after_days,
        ---------- lineage
        is_listed,
        first_seen_date,
        last_seen_date,
        as_of_date
    from assessed
)

select * from final
