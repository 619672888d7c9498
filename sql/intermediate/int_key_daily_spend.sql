-- int_key_daily_spend: each API key's day of marts.fct_daily_spend, summed over its models and providers:
-- what the rules that judge a key against its own history read (credit_burn_spike, premium_share_rise,
-- runaway_usage, unowned_spend).
-- Grain: usage_date × api_key_hash. Key: the same two columns ('(unattributed)' included).
-- Upstream: marts.fct_daily_spend.
-- A view, not a table: the rules read at most 29 days of it, which DuckDB aggregates from fct_daily_spend
-- in milliseconds (the usage_date filter reaches the scan), and a view cannot fall behind a rebuilt day.
-- Every staging refresh and mart build re-creates it from this file.
-- api_key_name, workspace_name, project and is_owned are the key's that day (ownership is per key and day).
-- top_model is the model with the most requests; model_requests lists the requests per model, so a rule can
-- tell the models a key usually uses from new ones without reading the fact table again.
with
key_models as (
    select
        usage_date,
        api_key_hash,
        model,
        any_value(api_key_name) as api_key_name,
        any_value(workspace_name) as workspace_name,
        any_value(project) as project,
        any_value(is_owned) as is_owned,
        marts.exact_sum(spend_usd) as spend_usd,
        marts.exact_sum(case when is_premium then spend_usd end) as premium_spend_usd,
        sum(requests) as requests,
        sum(completion_tokens) as completion_tokens,
        sum(prompt_tokens + completion_tokens) as tokens
    from marts.fct_daily_spend
    group by usage_date, api_key_hash, model
)

select
    usage_date,
    api_key_hash,
    any_value(api_key_name) as api_key_name,
    any_value(workspace_name) as workspace_name,
    any_value(project) as project,
    any_value(is_owned) as is_owned,
    marts.exact_sum(spend_usd) as spend_usd,
    coalesce(marts.exact_sum(premium_spend_usd), 0) as premium_spend_usd,
    sum(requests) as requests,
    sum(completion_tokens) as completion_tokens,
    sum(tokens) as tokens,
    arg_max(model, requests) as top_model,
    list({'model': model, 'requests': requests} order by model) as model_requests
from key_models
group by usage_date, api_key_hash
