-- stg_activity: per-key usage from /activity?date=D&api_key_hash=H, typed.
-- Grain: usage_date × api_key_hash × model_permaslug × endpoint_id. Key: the same four columns.
-- Source: staging.stg_activity_rows (scope 'key').
with
key_rows as (
    select * exclude (scope) from staging.stg_activity_rows where scope = 'key'
)

select * from key_rows
