-- Alert ledger (openrouter_spend.alerts): marts.fct_alerts gets the columns that make an alert explainable
-- and traceable (segment, streak, routing, text), and two tables record what was planned and delivered.
-- Ledger first, delivery second: evaluate_day writes fct_alerts and the planned deliveries before emit_day
-- sends anything; emit_day records each delivery's outcome, so a rerun sends what failed and nothing twice.
alter table marts.fct_alerts add column if not exists segment_key varchar;
alter table marts.fct_alerts add column if not exists team varchar;
alter table marts.fct_alerts add column if not exists api_key_hash varchar;
alter table marts.fct_alerts add column if not exists api_key_name varchar;
alter table marts.fct_alerts add column if not exists model varchar;
alter table marts.fct_alerts add column if not exists provider_name varchar;
alter table marts.fct_alerts add column if not exists workflow varchar;
alter table marts.fct_alerts add column if not exists signal varchar;
alter table marts.fct_alerts add column if not exists window_start date;
alter table marts.fct_alerts add column if not exists window_end date;
alter table marts.fct_alerts add column if not exists baseline_start date;
alter table marts.fct_alerts add column if not exists baseline_end date;
alter table marts.fct_alerts add column if not exists history_days integer;
alter table marts.fct_alerts add column if not exists base_severity varchar;
alter table marts.fct_alerts add column if not exists occurrence varchar;
alter table marts.fct_alerts add column if not exists days_active integer;
alter table marts.fct_alerts add column if not exists notified_severity varchar;
alter table marts.fct_alerts add column if not exists is_notified boolean;
alter table marts.fct_alerts add column if not exists annotation_ids varchar[];
alter table marts.fct_alerts add column if not exists quality_status varchar;
alter table marts.fct_alerts add column if not exists route varchar;
alter table marts.fct_alerts add column if not exists title varchar;
alter table marts.fct_alerts add column if not exists message varchar;
alter table marts.fct_alerts add column if not exists contributors json;
alter table marts.fct_alerts add column if not exists facts json;
alter table marts.fct_alerts add column if not exists run_id varchar;
alter table marts.fct_alerts add column if not exists evaluated_at timestamptz;

-- One row per alert × channel target. Kept across re-evaluations of the day: a sent delivery stays sent.
create table if not exists marts.fct_alert_deliveries (
    delivery_id varchar primary key,
    alert_id varchar not null,
    usage_date date not null,
    channel varchar not null,
    route varchar not null,
    target varchar not null,
    status varchar not null,
    attempts integer not null,
    planned_at timestamptz not null,
    planned_run_id varchar,
    first_attempt_at timestamptz,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    last_error varchar,
    last_run_id varchar
);

-- One row per evaluation of a day (per run): proves a day was evaluated even when nothing fired.
create table if not exists marts.fct_alert_runs (
    usage_date date not null,
    run_id varchar not null,
    evaluated_at timestamptz not null,
    quality_status varchar not null,
    quality_summary varchar,
    rules_evaluated varchar[] not null,
    alerts integer not null,
    fired integer not null,
    suppressed integer not null,
    blocked integer not null,
    notified integer not null,
    to_send integer not null,
    primary key (usage_date, run_id)
);
