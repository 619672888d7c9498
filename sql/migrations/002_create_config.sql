-- Configuration layer: every validated version of include/config (owners, premium rule, annotations),
-- kept forever. A version is in force for usage days in [effective_from, effective_to); marts join it
-- by day, so a changed registry or budget never rewrites days built before the change.
-- Loaded by openrouter_spend.config.store_config inside the mart build transaction.
create schema if not exists config;

create table if not exists config.config_versions (
    config_version_id integer primary key,
    content_sha256 varchar not null,
    effective_from date not null,
    effective_to date,
    loaded_at timestamptz not null,
    config_dir varchar not null,
    file_sha256 json not null
);

create table if not exists config.projects (
    config_version_id integer not null,
    project varchar not null,
    team varchar not null,
    budget_owner varchar not null,
    budget_owner_contact varchar not null,
    description varchar,
    daily_budget_usd double,
    weekly_budget_usd double,
    monthly_budget_usd double,
    primary key (config_version_id, project)
);

create table if not exists config.launch_windows (
    config_version_id integer not null,
    project varchar not null,
    start_date date not null,
    end_date date not null,
    velocity_multiplier double not null,
    description varchar
);

create table if not exists config.key_matchers (
    config_version_id integer not null,
    project varchar not null,
    match_kind varchar not null check (match_kind in ('key_hash', 'key_name', 'workspace')),
    pattern varchar not null,
    kind_rank integer not null,
    specificity integer not null,
    file_order integer not null,
    valid_from date,
    valid_to date
);

create table if not exists config.premium_rules (
    config_version_id integer primary key,
    completion_price_threshold_per_mtok_usd double,
    blended_price_threshold_per_mtok_usd double,
    blended_prompt_weight double not null,
    blended_completion_weight double not null
);

create table if not exists config.premium_model_lists (
    config_version_id integer not null,
    model_pattern varchar not null,
    is_premium boolean not null
);

create table if not exists config.annotations (
    config_version_id integer not null,
    annotation_id varchar not null,
    kind varchar not null check (kind in ('release', 'incident', 'launch')),
    start_date date not null,
    end_date date not null,
    project varchar not null,
    signals varchar[] not null,
    description varchar not null,
    primary key (config_version_id, annotation_id)
);

create table if not exists config.settings (
    config_version_id integer primary key,
    unused_key_days integer not null
);
