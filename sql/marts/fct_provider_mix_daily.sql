-- fct_provider_mix_daily: which providers served each project's traffic, as shares of spend and requests,
-- and how that mix moved against the previous 7 days, in share points and in dollars.
-- Grain: usage_date × project × provider_name (project '*' = whole account). Key: the same three columns.
-- Upstream: marts.fct_daily_spend through the macro marts.mix_daily (sql/macros/mix_daily.sql: the method).
-- Partition: usage_date; builds the days in getvariable('mart_days').
with
mix as (
    select * from marts.mix_daily('provider_name')
),

final as (
    select * rename (mix_key as provider_name) from mix
)

select * from final
