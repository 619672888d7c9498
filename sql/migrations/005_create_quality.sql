-- Data-quality gate (openrouter_spend.quality): what every validation run checked, how each run ended, and
-- the blind-spot report. validate_day writes the two result tables after the marts are built and before
-- they are published; the alert rules read fct_quality_runs to block decision alerts of a failed day.
-- rpt_blind_spots_daily is a mart like the others (sql/marts/rpt_blind_spots_daily.sql).
create schema if not exists marts;

-- One row per expectation per validation run; a rerun with the same run_id replaces its own rows.
create table if not exists marts.fct_quality_results (
    run_id varchar not null,
    usage_date date not null,
    check_id varchar not null,
    validated_at timestamptz not null,
    suite varchar not null,
    dataset varchar not null,
    expectation_type varchar not null,
    column_name varchar,
    description varchar not null,
    severity varchar not null check (severity in ('error', 'warning')),
    success boolean not null,
    element_count bigint,
    unexpected_count bigint,
    unexpected_percent double,
    observed_value varchar,
    unexpected_sample json,
    expectation_kwargs json,
    message varchar,
    primary key (run_id, usage_date, check_id)
);

-- One row per validation run of a day; the newest validated_at of a day is its current quality status.
create table if not exists marts.fct_quality_runs (
    run_id varchar not null,
    usage_date date not null,
    validated_at timestamptz not null,
    status varchar not null check (status in ('passed', 'failed')),
    expectation_count integer not null,
    failed_count integer not null,
    warning_count integer not null,
    summary varchar not null,
    data_docs_path varchar,
    results_path varchar,
    duration_seconds double,
    config_sha256 varchar,
    primary key (run_id, usage_date)
);

create table if not exists marts.rpt_blind_spots_daily (
    usage_date date not null,
    project varchar not null,
    spend_usd double not null,
    byok_spend_usd double not null,
    total_spend_usd double not null,
    requests bigint not null,
    byok_spend_share double,
    has_per_request_data boolean not null,
    per_request_requests bigint,
    per_request_cost_usd double,
    per_request_request_coverage_share double,
    per_request_spend_coverage_share double,
    unattributed_spend_usd double not null,
    gap_days_30d integer not null,
    gap_dates date[] not null,
    blind_spots varchar[] not null,
    primary key (usage_date, project)
);
