-- fct_model_mix_daily: which models each project's spend and requests went to, as shares, and how that mix
-- moved against the previous 7 days, in share points and in dollars ("which model's share moved most").
-- Grain: usage_date × project × model_permaslug (project '*' = whole account). Key: the same three columns.
-- Upstream: marts.fct_daily_spend through the macro marts.mix_daily (sql/macros/mix_daily.sql: the method).
-- Partition: usage_date; builds the days in getvariable('mart_days').
with
mix as (
    select * from marts.mix_daily('model_permaslug')
),

final as (
    select * rename (mix_key as model_permaslug) from mix
)

select * from final
