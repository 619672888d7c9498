-- stg_loaded_days: every UTC day the warehouse holds (account activity or a /credits snapshot loaded).
-- Grain: usage_date. Key: usage_date.
-- Source: staging.stg_account_activity, staging.stg_credits. Baselines and comparisons count history
-- in these days, so a day never loaded is missing history, not a day of zero spend.
with
loaded as (
    select usage_date from staging.stg_account_activity
    union
    select snapshot_date from staging.stg_credits
)

select * from loaded
