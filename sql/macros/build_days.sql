-- marts.build_days(): the days a day-partitioned mart builds, one row per day (usage_date).
-- Source: the variable mart_days, which each mart build sets to the days it rebuilds.
create or replace macro marts.build_days() as table
select unnest(getvariable('mart_days')) as usage_date
