-- stg_loaded_days: every UTC day the warehouse holds (account activity or a /credits snapshot loaded).
-- Grain: usage_date. Key: usage_date.
-- Source: raw.activity (scope 'account'), raw.credits: the partitions stg_account_activity and stg_credits
-- type (each partition is the usage or snapshot day), read on their narrow columns so that the rules, which
-- read every loaded day, never parse a payload for it. Baselines and comparisons count history in these
-- days, so a day never loaded is missing history, not a day of zero spend.
with
loaded as (
    select partition_date as usage_date from raw.activity where scope = 'account'
    union
    select partition_date from raw.credits
)

select * from loaded
