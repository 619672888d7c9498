-- Weekly savings notices (openrouter_spend.alerts.savings_notices, docs/alerts.md "Weekly savings notices"):
-- one row per notice × channel target, written when it is sent, failed or skipped. The week's rows make
-- the notice go out once: a rerun or a later day of the same week only retries a failed delivery, with the
-- text that was first planned (notice). Not an alert: no row in marts.fct_alerts, whose rule ids are fixed.
create table if not exists meta.savings_notices (
    delivery_id varchar primary key,
    notice_id varchar not null,
    week_start date not null,
    usage_date date not null,
    owner varchar not null,
    budget_owner varchar,
    channel varchar not null,
    route varchar not null,
    target varchar not null,
    status varchar not null,
    attempts integer not null,
    opportunities integer not null,
    monthly_saving_usd double not null,
    notice json not null,
    first_attempt_at timestamptz not null,
    last_attempt_at timestamptz not null,
    delivered_at timestamptz,
    last_error varchar,
    last_run_id varchar not null
);
