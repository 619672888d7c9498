-- Real-API time semantics: a /credits snapshot fetched after its following day ended is late and cannot
-- give the balance at the end of its day (fct_credit_balance leaves it NULL and says why); per-request
-- costs are measured or allocated from /activity cells (fct_generations); the gate's results say which
-- values each reconciliation compared and why a snapshot was skipped.
alter table marts.fct_credit_balance alter column total_credits_usd drop not null;
alter table marts.fct_credit_balance alter column total_usage_usd drop not null;
alter table marts.fct_credit_balance alter column balance_usd drop not null;
alter table marts.fct_credit_balance add column if not exists snapshot_timing varchar;
alter table marts.fct_credit_balance add column if not exists is_late_snapshot boolean;
alter table marts.fct_credit_balance add column if not exists snapshot_balance_usd double;

alter table marts.fct_generations add column if not exists is_cost_measured boolean;

alter table marts.fct_quality_results add column if not exists compared_values varchar;
alter table marts.fct_quality_results add column if not exists skip_reason varchar;
