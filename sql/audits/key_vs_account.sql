-- key_vs_account: per model × provider of the day, account-level activity against the per-key activity summed,
-- and the remainder no listed key accounts for (reconcile.key_usage_within_account and friends).
-- Grain: model_permaslug × provider_name of the day. Key: model_permaslug, provider_name.
-- Upstream: staging.stg_account_activity, staging.stg_activity.
-- Parameters: $day.
with
account as (
    select
        model_permaslug,
        provider_name,
        marts.exact_sum(usage_usd) as usage_usd,
        marts.exact_sum(byok_usage_usd) as byok_usd,
        sum(requests) as requests
    from staging.stg_account_activity
    where usage_date = $day
    group by all
),

keys as (
    select
        model_permaslug,
        provider_name,
        marts.exact_sum(usage_usd) as usage_usd,
        marts.exact_sum(byok_usage_usd) as byok_usd,
        sum(requests) as requests
    from staging.stg_activity
    where usage_date = $day
    group by all
),

compared as (
    select
        $day::date as usage_date,
        model_permaslug,
        provider_name,
        coalesce(account.usage_usd, 0) as account_usage_usd,
        coalesce(keys.usage_usd, 0) as key_usage_usd,
        coalesce(account.byok_usd, 0) as account_byok_usd,
        coalesce(keys.byok_usd, 0) as key_byok_usd,
        coalesce(account.requests, 0) as account_requests,
        coalesce(keys.requests, 0) as key_requests
    from account
    full outer join keys using (model_permaslug, provider_name)
)

select
    *,
    account_usage_usd - key_usage_usd as unattributed_usage_usd,
    key_usage_usd - account_usage_usd as key_excess_usage_usd,
    key_byok_usd - account_byok_usd as key_excess_byok_usd,
    key_requests - account_requests as key_excess_requests
from compared
order by model_permaslug, provider_name
