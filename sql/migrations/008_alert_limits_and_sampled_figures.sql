-- Detection limits (docs/alerts.md): correlated alerts, annotations that announce a size, one waste figure,
-- the account's project-mix effect and per-request figures scaled to the traffic they describe.

-- An alert explained by another alert of the same day (its root: one cause pages once). A root lists the
-- alerts it explains; the ledger keeps every row, notifications send the root.
alter table marts.fct_alerts add column if not exists root_alert_id varchar;
alter table marts.fct_alerts add column if not exists linked_alert_ids varchar[];

-- The multiple of its signals' level an annotation announces (2.0 = doubles); NULL = a rise of any size.
alter table config.annotations add column if not exists expected_change double;
alter table marts.dim_annotation add column if not exists expected_change double;

-- The waste figure of each segment and day, and the shift of traffic between projects (account row).
alter table marts.rpt_spend_change add column if not exists wasted_spend_usd double;
alter table marts.rpt_spend_change add column if not exists project_mix_effect_usd double;
alter table marts.rpt_spend_change add column if not exists wow_project_mix_effect_usd double;

-- Per-request waste is a sample of the key's traffic: its coverage and 95% interval.
alter table marts.rpt_key_usage_daily add column if not exists per_request_coverage_share double;
alter table marts.rpt_key_usage_daily add column if not exists wasted_spend_ci_low_usd double;
alter table marts.rpt_key_usage_daily add column if not exists wasted_spend_ci_high_usd double;

-- Fallback figures scaled from the logged requests to the project's traffic.
alter table marts.fct_fallback_daily add column if not exists request_coverage_share double;
alter table marts.fct_fallback_daily add column if not exists traffic_requests bigint;
alter table marts.fct_fallback_daily add column if not exists traffic_fallback_requests bigint;
alter table marts.fct_fallback_daily add column if not exists traffic_fallback_spend_usd double;
alter table marts.fct_fallback_daily add column if not exists traffic_fallback_extra_cost_usd double;
