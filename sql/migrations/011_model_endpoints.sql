-- Provider prices per model (GET /models/{id}/endpoints, fetched for the models used that day) and the two
-- savings kinds they and the request logs feed (docs/marts.md, "Savings opportunities"): provider_price_spread
-- and premium_vs_standard. Existing days get the new columns at their next rebuild (`openrouter-spend rebuild`).

-- One row per provider (PublicEndpoint) of a landed endpoints answer; model_id is the answer's data.id.
create table if not exists raw.model_endpoints (
    partition_date date not null,
    run_id varchar not null,
    fetched_at timestamptz not null,
    landing_file varchar not null,
    request_params json,
    model_id varchar not null,
    provider_name varchar not null,
    payload json not null
);

alter table marts.rpt_savings_opportunities add column if not exists workflow varchar;
alter table marts.rpt_savings_opportunities add column if not exists alternative_provider_name varchar;
alter table marts.rpt_savings_opportunities add column if not exists alternative_model_permaslug varchar;
alter table marts.rpt_savings_opportunities add column if not exists current_cost_7d_usd double;
alter table marts.rpt_savings_opportunities add column if not exists alternative_cost_7d_usd double;
alter table marts.rpt_savings_opportunities add column if not exists used_uptime_last_1d double;
alter table marts.rpt_savings_opportunities add column if not exists alternative_uptime_last_1d double;
alter table marts.rpt_savings_opportunities add column if not exists pinned_reason varchar;
alter table marts.rpt_savings_opportunities add column if not exists pinned_monthly_gap_usd double;
alter table marts.rpt_savings_opportunities add column if not exists verdict_coverage double;
alter table marts.rpt_savings_opportunities add column if not exists premium_requests_7d bigint;
alter table marts.rpt_savings_opportunities add column if not exists premium_accepted_7d bigint;
alter table marts.rpt_savings_opportunities add column if not exists standard_requests_7d bigint;
alter table marts.rpt_savings_opportunities add column if not exists standard_accepted_7d bigint;
alter table marts.rpt_savings_opportunities add column if not exists premium_acceptance_rate double;
alter table marts.rpt_savings_opportunities add column if not exists premium_acceptance_ci_low double;
alter table marts.rpt_savings_opportunities add column if not exists premium_acceptance_ci_high double;
alter table marts.rpt_savings_opportunities add column if not exists standard_acceptance_rate double;
alter table marts.rpt_savings_opportunities add column if not exists standard_acceptance_ci_low double;
alter table marts.rpt_savings_opportunities add column if not exists standard_acceptance_ci_high double;
alter table marts.rpt_savings_opportunities add column if not exists premium_cost_per_accepted_usd double;
alter table marts.rpt_savings_opportunities add column if not exists standard_cost_per_accepted_usd double;
alter table marts.rpt_savings_opportunities add column if not exists monthly_saving_low_usd double;
alter table marts.rpt_savings_opportunities add column if not exists monthly_saving_high_usd double;
