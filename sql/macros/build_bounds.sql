-- marts.build_bounds(lookback_days): the span of days a build reads, one row: first_day = the first day built
-- less lookback_days (a timestamp, so usage_date between first_day and last_day compares as before),
-- last_day = the last day built. Both are NULL when no day is built.
-- Source: the variable mart_days, which each mart build sets to the days it rebuilds (marts.build_days()).
create or replace macro marts.build_bounds(lookback_days) as table
select
    list_min(getvariable('mart_days')) - to_days(lookback_days) as first_day,
    list_max(getvariable('mart_days')) as last_day
