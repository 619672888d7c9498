"""Reconciliation and completeness frames for the quality gate: one DuckDB query per check, as pandas frames.

Each frame has one row per thing reconciled (a model × provider of the day, a key, the day) with the two
sides, their difference and the tolerance, so a Great Expectations suite can assert on it and a failure
names the row. Nothing here decides pass or fail; openrouter_spend.quality does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta

UNATTRIBUTED_KEY = "(unattributed)"
PER_KEY_ACTIVITY = "/activity?api_key_hash"


def frame_of(con, sql: str, params: dict | list | None = None):
    """The result of one query as a pandas frame (DuckDB's converter trips a pandas 3 deprecation warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.drop")
        return con.execute(sql, params or {}).df()


@dataclass(frozen=True)
class Tolerances:
    """How far two sides of a reconciliation may differ (quality.yaml `tolerances`)."""

    float_noise_usd: float = 1e-6
    credits_usage_abs_usd: float = 0.05
    credits_usage_relative: float = 0.01
    key_usage_abs_usd: float = 0.01
    key_usage_relative: float = 0.01
    per_request_abs_usd: float = 0.01
    per_request_relative: float = 0.0
    share_epsilon: float = 1e-9
    snapshot_max_lag_hours: float | None = None


def key_vs_account(con, day: date):
    """Per model × provider: account-level activity against the per-key activity summed, and the remainder."""
    return frame_of(
        con,
        """
        with
        account as (
            select model_permaslug, provider_name,
                marts.exact_sum(usage_usd) as usage_usd, marts.exact_sum(byok_usage_usd) as byok_usd,
                sum(requests) as requests
            from staging.stg_account_activity where usage_date = $day
            group by all
        ),
        keys as (
            select model_permaslug, provider_name,
                marts.exact_sum(usage_usd) as usage_usd, marts.exact_sum(byok_usage_usd) as byok_usd,
                sum(requests) as requests
            from staging.stg_activity where usage_date = $day
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
        """,
        {"day": day},
    )


def marts_vs_account(con, day: date):
    """One row for the day: account activity against fct_daily_spend, and unattributed spend kept in the mart."""
    return frame_of(
        con,
        """
        with
        account as (
            select
                coalesce(marts.exact_sum(usage_usd), 0) as usage_usd,
                coalesce(marts.exact_sum(byok_usage_usd), 0) as byok_usd,
                coalesce(sum(requests), 0) as requests
            from staging.stg_account_activity where usage_date = $day
        ),
        groups as (
            select model_permaslug, provider_name, marts.exact_sum(usage_usd) as usage_usd
            from staging.stg_account_activity where usage_date = $day group by all
        ),
        key_groups as (
            select model_permaslug, provider_name, marts.exact_sum(usage_usd) as usage_usd
            from staging.stg_activity where usage_date = $day group by all
        ),
        remainder as (
            select coalesce(marts.exact_sum(greatest(groups.usage_usd - coalesce(key_groups.usage_usd, 0), 0)), 0)
                as unattributed_usd
            from groups left join key_groups using (model_permaslug, provider_name)
        ),
        mart as (
            select
                coalesce(marts.exact_sum(spend_usd), 0) as spend_usd,
                coalesce(marts.exact_sum(byok_spend_usd), 0) as byok_usd,
                coalesce(sum(requests), 0) as requests,
                coalesce(marts.exact_sum(case when api_key_hash = $unattributed then spend_usd end), 0)
                    as unattributed_usd
            from marts.fct_daily_spend where usage_date = $day
        )
        select
            $day::date as usage_date,
            account.usage_usd as account_usage_usd,
            mart.spend_usd as mart_spend_usd,
            mart.spend_usd - account.usage_usd as mart_minus_account_usd,
            mart.byok_usd - account.byok_usd as mart_minus_account_byok_usd,
            mart.requests - account.requests as mart_minus_account_requests,
            remainder.unattributed_usd as unattributed_usd,
            mart.unattributed_usd as mart_unattributed_usd,
            mart.unattributed_usd - remainder.unattributed_usd as mart_minus_unattributed_usd,
            coalesce(remainder.unattributed_usd / nullif(account.usage_usd, 0), 0) as unattributed_share
        from account, mart, remainder
        """,
        {"day": day, "unattributed": UNATTRIBUTED_KEY},
    )


SNAPSHOT_VIEWS = {"/credits": "staging.stg_credits", "/keys": "staging.stg_key_snapshots"}


@dataclass(frozen=True)
class SnapshotPair:
    """Which earlier snapshot a day's /credits or /keys snapshot is reconciled with, or why it cannot be.

    A snapshot describes the moment it was fetched. Only one fetched during the day after its own
    ('on_time') gives the end of its day (stg_credits / stg_key_snapshots end_of_day_*); a late one (fetched
    after the following day ended, as a backfill does) or an early one is never an end of a comparison. The
    previous snapshot is the newest earlier one on time; the unusable ones in between are named.
    """

    endpoint: str
    day: date
    timing: str | None
    fetched_at: datetime | None
    previous_date: date | None
    passed_over: tuple[tuple[date, str, datetime], ...]
    skip_reason: str | None

    @property
    def compared(self) -> bool:
        """True when the day's snapshot is reconciled with an earlier one."""
        return self.previous_date is not None and self.skip_reason is None

    @property
    def note(self) -> str | None:
        """Why a snapshot was not used: the skip reason, or the late snapshots passed over on the way back."""
        if self.skip_reason is not None:
            return self.skip_reason
        if self.passed_over:
            return (f"compared with the {self.endpoint} snapshot of {self.previous_date}, passing over "
                    + "; ".join(_unusable(self.endpoint, d, t, f) for d, t, f in self.passed_over))
        return None


def _unusable(endpoint: str, day: date, timing: str, fetched_at: datetime) -> str:
    following = day + timedelta(days=1)
    when = f"{fetched_at:%Y-%m-%d %H:%M} UTC"
    if timing == "late":
        return (f"the {endpoint} snapshot of {day} (late: fetched {when}, after {following} ended, so it describes "
                f"that moment, not the end of {day})")
    if timing == "early":
        return f"the {endpoint} snapshot of {day} (early: fetched {when}, before {day} ended)"
    return f"the {endpoint} snapshot of {day} ({timing}: fetched {when})"


def snapshot_pair(con, day: date, endpoint: str, tolerances: Tolerances | None = None) -> SnapshotPair:
    """The snapshot pairing for `day` of `endpoint` ('/credits' or '/keys'); see SnapshotPair."""
    max_lag = tolerances.snapshot_max_lag_hours if tolerances else None
    rows = con.execute(
        f"""
        select snapshot_date, any_value(snapshot_timing), max(fetched_at)
        from {SNAPSHOT_VIEWS[endpoint]}
        where snapshot_date <= $day
        group by snapshot_date
        order by snapshot_date desc
        """,
        {"day": day},
    ).fetchall()

    def usable(snapshot_date: date, timing: str, fetched_at: datetime) -> bool:
        if timing != "on_time":
            return False
        end = datetime.combine(snapshot_date + timedelta(days=1), datetime.min.time(), tzinfo=fetched_at.tzinfo)
        return max_lag is None or (fetched_at - end).total_seconds() / 3600 <= max_lag

    current = rows[0] if rows and rows[0][0] == day else None
    earlier = rows[1:] if current else rows
    previous = next((row for row in earlier if usable(*row)), None)
    passed = tuple(row for row in earlier if previous is None or row[0] > previous[0])
    reason = None
    if current is None:
        reason = f"no {endpoint} snapshot for {day}"
    elif not usable(*current):
        reason = (_unusable(endpoint, *current) if current[1] != "on_time" else
                  f"the {endpoint} snapshot of {day} was fetched more than {max_lag:g} hours after the day ended "
                  "(snapshot_max_lag_hours)")
    elif previous is None:
        reason = (f"no earlier {endpoint} snapshot describes the end of its day: "
                  + "; ".join(_unusable(endpoint, *row) for row in passed[:3])
                  + (f" and {len(passed) - 3} more" if len(passed) > 3 else "")
                  if passed else f"no earlier {endpoint} snapshot to compare with")
    return SnapshotPair(endpoint, day, current[1] if current else None, current[2] if current else None,
                        previous[0] if previous else None, passed if previous else (), reason)


def credits_vs_activity(con, day: date, tolerances: Tolerances, pair: SnapshotPair | None = None):
    """The change of end-of-day /credits usage since the previous snapshot against the activity of the days between.

    Compares only snapshots on time (see SnapshotPair): no row when the day's snapshot or every earlier one is
    late, early or missing. `missing_days` lists days between the snapshots that were never loaded, whose
    activity is then absent from the sum.
    """
    pair = pair or snapshot_pair(con, day, "/credits", tolerances)
    return frame_of(
        con,
        """
        with
        snapshots as (
            select snapshot_date, end_of_day_usage_usd as total_usage_usd, fetched_at,
                date_diff('second', (snapshot_date + interval 1 day)::timestamptz, fetched_at) / 3600.0 as lag_hours
            from staging.stg_credits
        ),
        current_snapshot as (
            select * from snapshots where snapshot_date = $day
        ),
        previous_snapshot as (
            select * from snapshots where snapshot_date = $previous
        ),
        between_days as (
            select unnest(generate_series(
                (select snapshot_date from previous_snapshot) + interval 1 day, $day::timestamp, interval 1 day
            ))::date as usage_date
        ),
        loaded_days as (
            select distinct partition_date as usage_date from meta.load_runs where status = 'loaded'
        ),
        activity as (
            select marts.exact_sum(usage_usd) as usage_usd
            from staging.stg_account_activity
            semi join between_days using (usage_date)
        ),
        missing as (
            select list(usage_date order by usage_date) as missing_days
            from between_days anti join loaded_days using (usage_date)
        ),
        compared as (
            select
                current_snapshot.snapshot_date as as_of_date,
                previous_snapshot.snapshot_date as previous_snapshot_date,
                current_snapshot.total_usage_usd - previous_snapshot.total_usage_usd as usage_delta_usd,
                coalesce(activity.usage_usd, 0) as activity_usage_usd,
                coalesce(missing.missing_days, []::date[]) as missing_days,
                current_snapshot.lag_hours as current_lag_hours,
                previous_snapshot.lag_hours as previous_lag_hours
            from current_snapshot, previous_snapshot, activity, missing
        )
        select
            as_of_date,
            previous_snapshot_date,
            usage_delta_usd,
            activity_usage_usd,
            usage_delta_usd - activity_usage_usd as difference_usd,
            abs(usage_delta_usd - activity_usage_usd) as abs_difference_usd,
            $abs_tol + $rel_tol * abs(activity_usage_usd) as tolerance_usd,
            len(missing_days) as missing_day_count,
            array_to_string(list_transform(missing_days, lambda d: strftime(d, '%Y-%m-%d')), ', ') as missing_days,
            current_lag_hours,
            previous_lag_hours
        from compared
        """,
        {"day": day, "previous": pair.previous_date if pair.compared else None,
         "abs_tol": tolerances.credits_usage_abs_usd, "rel_tol": tolerances.credits_usage_relative},
    )


def key_usage_vs_activity(con, day: date, tolerances: Tolerances, pair: SnapshotPair | None = None):
    """Per key listed in both the day's and the previous /keys snapshot: end-of-day usage delta against activity.

    Compares only snapshots on time, like credits_vs_activity (no rows otherwise).
    """
    pair = pair or snapshot_pair(con, day, "/keys", tolerances)
    return frame_of(
        con,
        """
        with
        snapshots as (
            select
                snapshot_date, api_key_hash, api_key_name,
                end_of_day_usage_usd as usage_usd, end_of_day_byok_usage_usd as byok_usage_usd
            from staging.stg_key_snapshots
        ),
        previous_date as (
            select $previous::date as snapshot_date
        ),
        current as (
            select * from snapshots where snapshot_date = $day
        ),
        previous as (
            select * from snapshots semi join previous_date using (snapshot_date)
        ),
        activity as (
            select
                api_key_hash,
                marts.exact_sum(usage_usd) as usage_usd,
                marts.exact_sum(byok_usage_usd) as byok_usd
            from staging.stg_activity
            where usage_date > (select snapshot_date from previous_date) and usage_date <= $day
            group by api_key_hash
        ),
        compared as (
            select
                current.api_key_hash,
                current.api_key_name,
                previous.snapshot_date as previous_snapshot_date,
                coalesce(current.usage_usd, 0) - coalesce(previous.usage_usd, 0) as usage_delta_usd,
                coalesce(activity.usage_usd, 0) as activity_usage_usd,
                coalesce(current.byok_usage_usd, 0) - coalesce(previous.byok_usage_usd, 0) as byok_delta_usd,
                coalesce(activity.byok_usd, 0) as activity_byok_usd
            from current
            inner join previous using (api_key_hash)
            left join activity using (api_key_hash)
        )
        select
            *,
            usage_delta_usd - activity_usage_usd as difference_usd,
            abs(usage_delta_usd - activity_usage_usd) as abs_difference_usd,
            $abs_tol + $rel_tol * abs(activity_usage_usd) as tolerance_usd,
            byok_delta_usd - activity_byok_usd as byok_difference_usd,
            abs(byok_delta_usd - activity_byok_usd) as abs_byok_difference_usd,
            $abs_tol + $rel_tol * abs(activity_byok_usd) as byok_tolerance_usd
        from compared
        order by api_key_hash
        """,
        {"day": day, "previous": pair.previous_date if pair.compared else None,
         "abs_tol": tolerances.key_usage_abs_usd, "rel_tol": tolerances.key_usage_relative},
    )


def per_request_vs_activity(con, day: date, tolerances: Tolerances):
    """Per project with per-request records that day: their measured and estimated costs against its activity.

    Credits and BYOK apart: cost_usd is credits (against /activity usage), byok_cost_usd BYOK (against
    byok_usage_inference). measured_* sum the requests whose cost was measured (fct_generations.is_cost_measured),
    estimated_* the others (allocated from activity, or imputed); estimated_share is their part of the
    per-request cost. allowed_usd / byok_allowed_usd bound a project's costs by its activity (+ tolerance).
    Empty until per-request data (marts.fct_generations) has rows for the day.
    """
    return frame_of(
        con,
        """
        with
        per_request as (
            select
                coalesce(project, '(unowned)') as project,
                count(*) as records,
                count(*) filter (where is_cost_measured) as measured_records,
                coalesce(marts.exact_sum(case when is_cost_measured then cost_usd end), 0) as measured_cost_usd,
                coalesce(marts.exact_sum(case when is_cost_measured then byok_cost_usd end), 0) as measured_byok_usd,
                coalesce(marts.exact_sum(case when not coalesce(is_cost_measured, false) then cost_usd end), 0)
                    as estimated_cost_usd,
                coalesce(marts.exact_sum(case when not coalesce(is_cost_measured, false) then byok_cost_usd end), 0)
                    as estimated_byok_usd
            from marts.fct_generations where usage_date = $day
            group by all
        ),
        activity as (
            select project, marts.exact_sum(spend_usd) as spend_usd, marts.exact_sum(byok_spend_usd) as byok_usd
            from marts.fct_daily_spend where usage_date = $day
            group by project
        )
        select
            $day::date as usage_date,
            per_request.project,
            per_request.records,
            per_request.measured_records,
            per_request.measured_cost_usd,
            per_request.measured_byok_usd,
            per_request.estimated_cost_usd,
            per_request.estimated_byok_usd,
            per_request.measured_cost_usd + per_request.estimated_cost_usd as per_request_cost_usd,
            per_request.estimated_cost_usd
                / nullif(per_request.measured_cost_usd + per_request.estimated_cost_usd, 0) as estimated_share,
            coalesce(activity.spend_usd, 0) as activity_spend_usd,
            coalesce(activity.byok_usd, 0) as activity_byok_usd,
            per_request.measured_cost_usd + per_request.estimated_cost_usd - coalesce(activity.spend_usd, 0)
                as excess_usd,
            coalesce(activity.spend_usd, 0) * (1 + $rel_tol) + $abs_tol as allowed_usd,
            coalesce(activity.byok_usd, 0) * (1 + $rel_tol) + $abs_tol as byok_allowed_usd
        from per_request
        left join activity using (project)
        order by per_request.project
        """,
        {"day": day, "abs_tol": tolerances.per_request_abs_usd, "rel_tol": tolerances.per_request_relative},
    )


def is_permanent_gap(con, day: date) -> bool:
    """True when the day was never loaded and is recorded in meta.extraction_gaps (it can never be fetched)."""
    loaded, gaps = con.execute(
        "select (select count(*) from meta.load_runs where partition_date = $day and status = 'loaded'),"
        " (select count(*) from meta.extraction_gaps where partition_date = $day)",
        {"day": day},
    ).fetchone()
    return loaded == 0 and gaps > 0


def endpoint_freshness(con, day: date, expected_endpoints: tuple[str, ...]):
    """One row per endpoint that had to land for the day: files landed and status landed/permanent_gap/missing.

    Per-key /activity is expected on top of the configured endpoints whenever the account-level /activity
    of the day has rows (keys spent, so their per-key rows must be there).
    """
    return frame_of(
        con,
        """
        with
        landed as (
            select
                case when endpoint = '/activity' and json_extract_string(request_params, '$.api_key_hash') is not null
                    then $per_key else endpoint end as endpoint,
                count(*) as landed_files,
                sum(item_count) as landed_items
            from meta.landed_files
            where partition_date = $day
            group by all
        ),
        account_rows as (
            select count(*) as account_rows from staging.stg_account_activity where usage_date = $day
        ),
        expected as (
            select unnest($endpoints::varchar[]) as endpoint
            union all
            select $per_key from account_rows where account_rows > 0
        ),
        gap as (
            select
                count(*) filter (where partition_date = $day) > 0 as is_gap,
                (select count(*) from meta.load_runs where partition_date = $day and status = 'loaded') = 0
                    as never_loaded
            from meta.extraction_gaps
        )
        select
            $day::date as usage_date,
            expected.endpoint,
            coalesce(landed.landed_files, 0) as landed_files,
            coalesce(landed.landed_items, 0) as landed_items,
            case
                when coalesce(landed.landed_files, 0) > 0 then 'landed'
                when gap.is_gap and gap.never_loaded then 'permanent_gap'
                else 'missing'
            end as status
        from expected
        cross join gap
        left join landed using (endpoint)
        order by expected.endpoint
        """,
        {"day": day, "endpoints": list(expected_endpoints), "per_key": PER_KEY_ACTIVITY},
    )


def record_unreachable_gaps(con, day: date, window_days: int, run_id: str) -> list[date]:
    """Record days never loaded that left the API window before `day` as permanent gaps; returns them."""
    oldest_fetchable = day - timedelta(days=window_days - 1)
    found = [row[0] for row in con.execute(
        """
        with
        bounds as (
            select min(partition_date) as first_day from (
                select partition_date from meta.load_runs
                union all
                select partition_date from meta.extraction_gaps
            )
        ),
        days as (
            select unnest(generate_series((select first_day from bounds), $before::timestamp, interval 1 day))::date
                as partition_date
        )
        select partition_date from days
        where partition_date not in (select partition_date from meta.load_runs where status = 'loaded')
            and partition_date not in (select partition_date from meta.extraction_gaps)
        order by 1
        """,
        {"before": oldest_fetchable - timedelta(days=1)},
    ).fetchall()]
    for gap_day in found:
        con.execute(
            "insert or ignore into meta.extraction_gaps (partition_date, endpoint, reason, run_id) "
            "values (?, '/activity', ?, ?)",
            [gap_day, f"never loaded, and outside the API's {window_days}-day window by {day} "
                      "(recorded by the quality gate)", run_id],
        )
    return found


def history_completeness(con, day: date, window_days: int):
    """One row per day from the first loaded (or gap) day to `day`: loaded, permanent_gap or missing."""
    return frame_of(
        con,
        """
        with
        bounds as (
            select least(min(partition_date), $day::date) as first_day from (
                select partition_date from meta.load_runs
                union all
                select partition_date from meta.extraction_gaps
            )
        ),
        days as (
            select unnest(generate_series(
                coalesce((select first_day from bounds), $day::date)::timestamp, $day::timestamp, interval 1 day
            ))::date as usage_date
        ),
        loaded as (
            select distinct partition_date as usage_date from meta.load_runs where status = 'loaded'
        ),
        gaps as (
            select distinct partition_date as usage_date from meta.extraction_gaps
        )
        select
            days.usage_date,
            case
                when loaded.usage_date is not null then 'loaded'
                when gaps.usage_date is not null then 'permanent_gap'
                else 'missing'
            end as status,
            days.usage_date >= $day::date - ($window - 1) as is_in_window
        from days
        left join loaded using (usage_date)
        left join gaps using (usage_date)
        order by days.usage_date
        """,
        {"day": day, "window": window_days},
    )
