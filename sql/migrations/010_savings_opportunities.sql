-- Savings opportunities in dollars (docs/marts.md, "Savings opportunities"): prompt caching left unused and
-- model price changes, ranked by their monthly figure.
-- No primary key: api_key_hash is NULL on price_change rows and a key column cannot be; the quality gate
-- checks the grain (usage_date × project × opportunity_kind × api_key_hash × model_permaslug) unique.

create table if not exists marts.rpt_savings_opportunities (
    usage_date date not null,
    project varchar not null,
    team varchar,
    budget_owner varchar,
    opportunity_kind varchar not null,
    api_key_hash varchar,
    model_permaslug varchar not null,
    model varchar not null,
    provider_name varchar,
    monthly_saving_usd double not null,
    bound_kind varchar not null,
    basis varchar not null,
    loaded_days_7d integer not null,
    prompt_tokens bigint,
    cached_tokens bigint,
    cached_share double,
    prompt_price_per_mtok_usd double,
    cache_read_price_per_mtok_usd double,
    saved_today_usd double,
    missed_saving_today_usd double,
    price_changed_on date,
    price_direction varchar,
    old_prompt_price_per_mtok_usd double,
    new_prompt_price_per_mtok_usd double,
    old_completion_price_per_mtok_usd double,
    new_completion_price_per_mtok_usd double,
    old_cache_read_price_per_mtok_usd double,
    new_cache_read_price_per_mtok_usd double,
    prompt_tokens_7d bigint,
    cached_tokens_7d bigint,
    completion_tokens_7d bigint,
    monthly_price_effect_usd double
);
