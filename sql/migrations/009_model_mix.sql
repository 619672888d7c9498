-- Model mix beside provider mix, and the mix drift in dollars as well as in share points (docs/marts.md,
-- "Provider and model mix"). Existing days get the new columns at their next rebuild (`openrouter-spend rebuild`).

create table if not exists marts.fct_model_mix_daily (
    usage_date date not null,
    project varchar not null,
    model_permaslug varchar not null,
    spend_usd double not null,
    byok_spend_usd double not null,
    total_spend_usd double not null,
    requests bigint not null,
    spend_share double,
    total_spend_share double,
    request_share double,
    prior_7d_spend_share double,
    spend_share_change_7d double,
    spend_shift_7d_usd double,
    prior_7d_avg_spend_usd double,
    spend_change_7d_usd double,
    primary key (usage_date, project, model_permaslug)
);

alter table marts.fct_provider_mix_daily add column if not exists spend_shift_7d_usd double;
alter table marts.fct_provider_mix_daily add column if not exists prior_7d_avg_spend_usd double;
alter table marts.fct_provider_mix_daily add column if not exists spend_change_7d_usd double;
