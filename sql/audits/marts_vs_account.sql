-- marts_vs_account: the day's account activity against marts.fct_daily_spend, and the unattributed remainder
-- (spend no listed key accounts for) against what the mart keeps as api_key_hash '(unattributed)'.
-- Grain: one row for the day. Key: usage_date.
-- Upstream: staging.stg_account_activity, staging.stg_activity, marts.fct_daily_spend.
-- Parameters: $day, $unattributed (the api_key_hash of unattributed spend).
with
account as (
    select
        coalesce(marts.exact_sum(usage_usd), 0) as usage_usd,
        coalesce(marts.exact_sum(byok_usage_usd), 0) as byok_usd,
        coalesce(sum(requests), 0) as requests
    from staging.stg_account_activity
    where usage_date = $day
),

account_groups as (
    select model_permaslug, provider_name, marts.exact_sum(usage_usd) as usage_usd
    from staging.stg_account_activity
    where usage_date = $day
    group by all
),

key_groups as (
    select model_permaslug, provider_name, marts.exact_sum(usage_usd) as usage_usd
    from staging.stg_activity
    where usage_date = $day
    group by all
),

remainder as (
    select
        coalesce(marts.exact_sum(greatest(account_groups.usage_usd - coalesce(key_groups.usage_usd, 0), 0)), 0)
            as unattributed_usd
    from account_groups
    left join key_groups using (model_permaslug, provider_name)
),

mart as (
    select
        coalesce(marts.exact_sum(spend_usd), 0) as spend_usd,
        coalesce(marts.exact_sum(byok_spend_usd), 0) as byok_usd,
        coalesce(sum(requests), 0) as requests,
        coalesce(marts.exact_sum(case when api_key_hash = $unattributed then spend_usd end), 0) as unattributed_usd
    from marts.fct_daily_spend
    where usage_date = $day
)

select
    $day::date as usage_date,
    account.usage_usd as account_usage_usd,
    mart.spend_usd as mart_spend_usd,
    mart.spend_usd - account.usage_usd as mart_minus_account_usd,
    mart.byok_usd - account.byok_usd as mart_minus_account_byok_usd,
    mart.requests - account.requests as mart_minus_account_requests,
    remainder.unattributed_usd,
    mart.unattributed_usd as mart_unattributed_usd,
    mart.unattributed_usd - remainder.unattributed_usd as mart_minus_unattributed_usd,
    coalesce(remainder.unattributed_usd / nullif(account.usage_usd, 0), 0) as unattributed_share
from account, mart, remainder
