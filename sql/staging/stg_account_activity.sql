-- stg_account_activity: account-level usage from /activity?date=D (all keys, deleted ones included).
-- Grain: usage_date × model_permaslug × endpoint_id. Key: the same three columns.
-- Source: staging.stg_activity_rows (scope 'account'). Reconciles against the per-key rows of stg_activity.
with
account_rows as (
    select * exclude (scope, api_key_hash, byok_requests) from staging.stg_activity_rows where scope = 'account'
)

select * from account_rows
