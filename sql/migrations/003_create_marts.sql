-- Marts layer: the analysts' API (product.md §5.3). Tables are created once here and filled by
-- openrouter_spend.marts, which replaces whole partitions (usage days) inside one transaction.
-- Descriptions of every table and column live in sql/marts/schema.yml and are applied as COMMENT ON
-- by each build. fct_generations, fct_fallback_daily and fct_alerts are filled by later issues.
create schema if not exists marts;

-- A sum of doubles that does not depend on the order rows arrive in (fixed point, 12 decimals, then back
-- to DOUBLE), so an incremental build and a full rebuild give bit-identical marts.
create or replace macro marts.exact_sum(x) as cast(sum(cast(x as decimal(38, 12))) as double);

-- The premium rule in one place: used per day (fct_daily_spend) and for the current state (dim_model).
-- Returns why a model is or is not premium; premium = 'listed', 'completion_price' or 'blended_price'.
create or replace macro marts.premium_reason(
    model_id, prompt_price_per_mtok, completion_price_per_mtok, is_router_price, is_listed_premium,
    is_listed_never_premium, completion_threshold, blended_threshold, prompt_weight, completion_weight
) as
case
    when ends_with(model_id, ':free') then 'free_variant'
    when coalesce(is_router_price, false) then 'router_price'
    when is_listed_never_premium then 'listed_never_premium'
    when is_listed_premium then 'listed'
    when completion_threshold is not null and completion_price_per_mtok >= completion_threshold
        then 'completion_price'
    when blended_threshold is not null
        and (prompt_weight * prompt_price_per_mtok + completion_weight * completion_price_per_mtok)
            / (prompt_weight + completion_weight) >= blended_threshold
        then 'blended_price'
    when prompt_price_per_mtok is null and completion_price_per_mtok is null then 'no_price'
    else 'below_threshold'
end;

create table if not exists marts.dim_model_price_history (
    model varchar not null,
    model_permaslug varchar,
    prompt_price_per_mtok_usd double,
    completion_price_per_mtok_usd double,
    cache_read_price_per_mtok_usd double,
    is_router_price boolean not null,
    valid_from date not null,
    valid_to date,
    is_current boolean not null,
    primary key (model, valid_from)
);

create table if not exists marts.fct_daily_spend (
    usage_date date not null,
    api_key_hash varchar not null,
    api_key_name varchar,
    workspace_id varchar,
    workspace_name varchar,
    project varchar not null,
    team varchar,
    budget_owner varchar,
    is_owned boolean not null,
    owner_match_kind varchar,
    model varchar not null,
    model_permaslug varchar not null,
    provider_name varchar not null,
    is_premium boolean not null,
    premium_reason varchar not null,
    prompt_price_per_mtok_usd double,
    completion_price_per_mtok_usd double,
    requests bigint not null,
    byok_requests bigint,
    prompt_tokens bigint not null,
    completion_tokens bigint not null,
    reasoning_tokens bigint not null,
    cached_tokens bigint not null,
    spend_usd double not null,
    byok_spend_usd double not null,
    total_spend_usd double not null,
    config_version_id integer not null,
    primary key (usage_date, api_key_hash, model_permaslug, provider_name)
);

create table if not exists marts.rpt_key_usage_daily (
    usage_date date not null,
    api_key_hash varchar not null,
    api_key_name varchar,
    project varchar not null,
    is_owned boolean not null,
    requests bigint not null,
    prompt_tokens bigint not null,
    completion_tokens bigint not null,
    spend_usd double not null,
    baseline_daily_requests double,
    request_ratio double,
    completion_tokens_per_request double,
    baseline_completion_tokens_per_request double,
    wasted_requests double not null,
    wasted_spend_usd double not null,
    is_loop_shaped boolean not null,
    primary key (usage_date, api_key_hash)
);

create table if not exists marts.fct_provider_mix_daily (
    usage_date date not null,
    project varchar not null,
    provider_name varchar not null,
    spend_usd double not null,
    byok_spend_usd double not null,
    total_spend_usd double not null,
    requests bigint not null,
    spend_share double,
    total_spend_share double,
    request_share double,
    prior_7d_spend_share double,
    spend_share_change_7d double,
    primary key (usage_date, project, provider_name)
);

create table if not exists marts.rpt_unit_economics_daily (
    usage_date date not null,
    project varchar not null,
    team varchar,
    budget_owner varchar,
    spend_usd double not null,
    byok_spend_usd double not null,
    total_spend_usd double not null,
    requests bigint not null,
    prompt_tokens bigint not null,
    completion_tokens bigint not null,
    reasoning_tokens bigint not null,
    cached_tokens bigint not null,
    total_tokens bigint not null,
    cost_per_request_usd double,
    cost_per_1k_tokens_usd double,
    tokens_per_request double,
    premium_spend_usd double not null,
    premium_spend_share double,
    premium_spend_share_baseline_28d double,
    premium_spend_share_change double,
    unowned_spend_usd double not null,
    wasted_spend_usd double not null,
    active_keys integer not null,
    top_provider_name varchar,
    top_provider_spend_share double,
    provider_hhi double,
    fallback_request_share double,
    generation_coverage_share double,
    accepted_results bigint,
    cost_per_accepted_result_usd double,
    primary key (usage_date, project)
);

create table if not exists marts.rpt_spend_change (
    usage_date date not null,
    project varchar not null,
    spend_usd double not null,
    requests bigint not null,
    prior_spend_usd double,
    delta_usd double,
    volume_effect_usd double,
    context_effect_usd double,
    mix_price_effect_usd double,
    waste_effect_usd double,
    decomposition_method varchar,
    prior_week_spend_usd double,
    wow_delta_usd double,
    wow_volume_effect_usd double,
    wow_context_effect_usd double,
    wow_mix_price_effect_usd double,
    wow_waste_effect_usd double,
    wow_decomposition_method varchar,
    primary key (usage_date, project)
);

create table if not exists marts.rpt_budget_status_daily (
    usage_date date not null,
    project varchar not null,
    team varchar not null,
    budget_owner varchar not null,
    budget_owner_contact varchar not null,
    spend_usd double not null,
    week_to_date_spend_usd double not null,
    month_to_date_spend_usd double not null,
    velocity_multiplier double not null,
    daily_budget_usd double,
    weekly_budget_usd double,
    monthly_budget_usd double,
    effective_daily_budget_usd double,
    effective_weekly_budget_usd double,
    effective_monthly_budget_usd double,
    daily_budget_used_ratio double,
    weekly_budget_used_ratio double,
    monthly_budget_used_ratio double,
    run_rate_7d_usd double,
    days_left_in_month integer not null,
    forecast_month_end_spend_usd double,
    forecast_monthly_budget_ratio double,
    config_version_id integer not null,
    primary key (usage_date, project)
);

create table if not exists marts.fct_credit_balance (
    as_of_date date primary key,
    total_credits_usd double not null,
    total_usage_usd double not null,
    balance_usd double not null,
    burn_usd double not null,
    byok_spend_usd double not null,
    topup_usd double,
    usage_delta_usd double,
    burn_7d_avg_usd double,
    burn_days_in_avg integer not null,
    runway_days double,
    projected_depletion_date date,
    snapshot_fetched_at timestamptz not null
);

create table if not exists marts.dim_api_key (
    api_key_hash varchar primary key,
    api_key_name varchar,
    workspace_id varchar,
    workspace_name varchar,
    project varchar not null,
    team varchar,
    budget_owner varchar,
    is_owned boolean not null,
    owner_match_kind varchar,
    creator_user_id varchar,
    is_disabled boolean not null,
    is_expired boolean not null,
    limit_usd double,
    limit_reset varchar,
    usage_usd double,
    byok_usage_usd double,
    created_at timestamptz,
    expires_at timestamptz,
    last_used_at timestamptz,
    last_activity_date date,
    days_since_last_use integer,
    spend_30d_usd double not null,
    is_unused boolean not null,
    unused_after_days integer not null,
    is_listed boolean not null,
    first_seen_date date,
    last_seen_date date,
    as_of_date date not null
);

create table if not exists marts.dim_model (
    model_permaslug varchar primary key,
    model varchar not null,
    model_name varchar,
    prompt_price_per_mtok_usd double,
    completion_price_per_mtok_usd double,
    cache_read_price_per_mtok_usd double,
    is_premium boolean not null,
    premium_reason varchar not null,
    is_router boolean not null,
    has_free_variant boolean not null,
    context_length bigint,
    is_listed boolean not null,
    price_valid_from date,
    as_of_date date not null
);

create table if not exists marts.dim_annotation (
    annotation_id varchar primary key,
    kind varchar not null,
    start_date date not null,
    end_date date not null,
    project varchar not null,
    signals varchar[] not null,
    description varchar not null,
    config_version_id integer not null
);

create table if not exists marts.build_log (
    build_id integer primary key,
    built_at timestamptz not null,
    build_kind varchar not null,
    requested_days date[] not null,
    rebuilt_days date[] not null,
    config_version_id integer not null,
    row_counts json not null
);

-- Contract tables filled by the per-request and alerting issues; created now so the contract holds.
create table if not exists marts.fct_generations (
    generation_id varchar primary key,
    created_at timestamptz,
    usage_date date,
    project varchar,
    workflow varchar,
    api_key_hash varchar,
    requested_model varchar,
    served_model varchar,
    provider_name varchar,
    attempts integer,
    is_fallback boolean,
    fallback_kind varchar,
    cost_usd double,
    is_accepted boolean
);

create table if not exists marts.fct_fallback_daily (
    usage_date date not null,
    project varchar not null,
    workflow varchar not null,
    requests bigint,
    fallback_requests bigint,
    fallback_share double,
    spend_usd double,
    fallback_spend_usd double,
    fallback_extra_cost_usd double,
    primary key (usage_date, project, workflow)
);

create table if not exists marts.fct_alerts (
    alert_id varchar primary key,
    rule_id varchar not null,
    usage_date date not null,
    severity varchar,
    project varchar,
    budget_owner varchar,
    metric varchar,
    observed_value double,
    expected_value double,
    threshold_value double,
    impact_usd double,
    explanation varchar,
    status varchar,
    channels varchar[],
    first_seen_date date
);
