-- fct_credit_balance: the credit balance after each day, what the day burned, top-ups kept apart from
-- burn, and the runway left at the trailing 7-day burn rate.
-- Grain: as_of_date (the usage day whose end the /credits snapshot follows). Key: as_of_date.
-- Upstream: staging.stg_credits (every snapshot, for the previous one), staging.stg_account_activity.
-- Partition: as_of_date; builds the days in getvariable('mart_days').
-- burn_usd = credits spent that day per /activity (Σ usage, BYOK fees included; BYOK inference itself
-- is paid to the provider and reported apart). topup_usd = increase of total_credits since the previous
-- snapshot (NULL for the first; a decrease, e.g. a refund, is not a top-up and shows as 0).
-- burn_7d_avg_usd = mean burn over the loaded days among the last 7 (the day included);
-- runway_days = balance ÷ burn_7d_avg_usd (0 when the balance is gone, NULL without burn).
-- Snapshot timing: /credits describes the moment it was fetched. Only a snapshot fetched during the day
-- after as_of_date ('on_time') gives the balance at the end of the day (its usage less the current day's
-- spend so far, stg_credits.end_of_day_usage_usd). A late snapshot (fetched after the following day ended,
-- as in a backfill) or an early one leaves total_credits_usd, total_usage_usd, balance_usd and the runway
-- NULL (unknown, never the fetch time's figure shown as the day's; snapshot_balance_usd keeps that, with
-- snapshot_fetched_at), and topup_usd / usage_delta_usd are NULL unless both this and the previous
-- snapshot are on time: a top-up between two snapshots of "now" is unknown, not 0.
with
build_days as (
    select usage_date as as_of_date from marts.build_days()
),

credits as (
    select
        snapshot_date as as_of_date,
        snapshot_timing,
        is_late_snapshot,
        case when snapshot_timing = 'on_time' then total_credits_usd end as total_credits_usd,
        end_of_day_usage_usd as total_usage_usd,
        case when snapshot_timing = 'on_time' then total_credits_usd - end_of_day_usage_usd end as balance_usd,
        balance_usd as snapshot_balance_usd,
        fetched_at
    from staging.stg_credits
),

burn as (
    select
        usage_date as as_of_date,
        marts.exact_sum(usage_usd) as burn_usd,
        marts.exact_sum(byok_usage_usd) as byok_spend_usd
    from staging.stg_account_activity
    group by usage_date
),

daily as (
    select
        credits.*,
        coalesce(burn.burn_usd, 0) as burn_usd,
        coalesce(burn.byok_spend_usd, 0) as byok_spend_usd,
        credits.total_credits_usd - lag(credits.total_credits_usd) over by_day as credits_change_usd,
        credits.total_usage_usd - lag(credits.total_usage_usd) over by_day as usage_delta_usd
    from credits
    left join burn using (as_of_date)
    window by_day as (order by credits.as_of_date)
),

averaged as (
    select
        *,
        marts.exact_sum(burn_usd) over last_week / count(burn_usd) over last_week as burn_7d_avg_usd,
        count(*) over last_week as burn_days_in_avg
    from daily
    window last_week as (order by as_of_date range between interval 6 day preceding and current row)
),

final as (
    select
        ---------- key
        as_of_date,
        ---------- balance at the end of the day (USD; NULL unless the snapshot is on time)
        total_credits_usd,
        total_usage_usd,
        balance_usd,
        ---------- flows (USD)
        burn_usd,
        byok_spend_usd,
        case when credits_change_usd is not null then greatest(credits_change_usd, 0) end as topup_usd,
        usage_delta_usd,
        ---------- runway
        burn_7d_avg_usd,
        burn_days_in_avg,
        -- greatest() skips NULLs: an unknown balance must not read as an empty one
        case
            when burn_7d_avg_usd > 0 and balance_usd is not null then greatest(balance_usd, 0) / burn_7d_avg_usd
        end as runway_days,
        case
            when burn_7d_avg_usd > 0 and balance_usd is not null
                then as_of_date + cast(floor(greatest(balance_usd, 0) / burn_7d_avg_usd) as integer)
        end as projected_depletion_date,
        ---------- snapshot timing and lineage
        snapshot_timing,
        is_late_snapshot,
        snapshot_balance_usd,
        fetched_at as snapshot_fetched_at
    from averaged
    semi join build_days using (as_of_date)
)

select * from final
