"""Reconciliation and completeness frames for the quality gate: one audit query (sql/audits/) per frame.

Each frame has one row per thing reconciled (a model × provider of the day, a key, the day) with the two
sides, their difference and the tolerance, so a Great Expectations suite can assert on it and a failure
names the row; reconciliation_datasets and freshness_datasets attach those checks. The frames are aggregates (tens to a few thousand rows), never a table's rows. Nothing here
decides pass or fail; openrouter_spend.quality.checks and .gate do.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.context import day_end
from openrouter_spend.quality.checks import Dataset, new_check
from openrouter_spend.quality.config import QualityConfig, Tolerances

UNATTRIBUTED_KEY = "(unattributed)"
PER_KEY_ACTIVITY = "/activity?api_key_hash"


@cache
def audit_sql(name: str) -> str:
    """The statement of sql/audits/<name>.sql."""
    return (settings.sql_dir() / "audits" / f"{name}.sql").read_text()


def frame_of(con, sql: str, params: dict | list | None = None):
    """The result of one query as a pandas frame (DuckDB's converter trips a pandas 3 deprecation warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.drop")
        return con.execute(sql, params or {}).df()


def key_vs_account(con, day: date):
    """Per model × provider: account-level activity against the per-key activity summed, and the remainder."""
    return frame_of(con, audit_sql("key_vs_account"), {"day": day})


def marts_vs_account(con, day: date):
    """One row for the day: account activity against fct_daily_spend, and unattributed spend kept in the mart."""
    return frame_of(con, audit_sql("marts_vs_account"), {"day": day, "unattributed": UNATTRIBUTED_KEY})


SNAPSHOT_AUDITS = {"/credits": "credit_snapshot_days", "/keys": "key_snapshot_days"}


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
    rows = con.execute(audit_sql(SNAPSHOT_AUDITS[endpoint]), {"day": day}).fetchall()

    def usable(snapshot_date: date, timing: str, fetched_at: datetime) -> bool:
        if timing != "on_time":
            return False
        return max_lag is None or (fetched_at - day_end(snapshot_date)).total_seconds() / 3600 <= max_lag

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
    return frame_of(con, audit_sql("credits_vs_activity"),
                    {"day": day, "previous": pair.previous_date if pair.compared else None,
                     "abs_tol": tolerances.credits_usage_abs_usd, "rel_tol": tolerances.credits_usage_relative})


def key_usage_vs_activity(con, day: date, tolerances: Tolerances, pair: SnapshotPair | None = None):
    """Per key listed in both the day's and the previous /keys snapshot: end-of-day usage delta against activity.

    Compares only snapshots on time, like credits_vs_activity (no rows otherwise).
    """
    pair = pair or snapshot_pair(con, day, "/keys", tolerances)
    return frame_of(con, audit_sql("key_usage_vs_activity"),
                    {"day": day, "previous": pair.previous_date if pair.compared else None,
                     "abs_tol": tolerances.key_usage_abs_usd, "rel_tol": tolerances.key_usage_relative})


def per_request_vs_activity(con, day: date, tolerances: Tolerances):
    """Per project with per-request records that day: their measured and estimated costs against its activity.

    Credits and BYOK apart: cost_usd is credits (against /activity usage), byok_cost_usd BYOK (against
    byok_usage_inference). measured_* sum the requests whose cost was measured (fct_generations.is_cost_measured),
    estimated_* the others (allocated from activity, or imputed); estimated_share is their part of the
    per-request cost. allowed_usd / byok_allowed_usd bound a project's costs by its activity (+ tolerance).
    Empty until per-request data (marts.fct_generations) has rows for the day.
    """
    return frame_of(con, audit_sql("per_request_vs_activity"),
                    {"day": day, "abs_tol": tolerances.per_request_abs_usd, "rel_tol": tolerances.per_request_relative})


def is_permanent_gap(con, day: date) -> bool:
    """True when the day was never loaded and is recorded in meta.extraction_gaps (it can never be fetched)."""
    return bool(con.execute(audit_sql("day_is_permanent_gap"), {"day": day}).fetchone()[0])


def endpoint_freshness(con, day: date, expected_endpoints: tuple[str, ...]):
    """One row per endpoint that had to land for the day: files landed and status landed/permanent_gap/missing.

    Per-key /activity is expected on top of the configured endpoints whenever the account-level /activity
    of the day has rows (keys spent, so their per-key rows must be there).
    """
    return frame_of(con, audit_sql("endpoint_freshness"),
                    {"day": day, "endpoints": list(expected_endpoints), "per_key": PER_KEY_ACTIVITY})


def record_unreachable_gaps(con, day: date, window_days: int, run_id: str) -> list[date]:
    """Record days never loaded that left the API window before `day` as permanent gaps; returns them."""
    oldest_fetchable = day - timedelta(days=window_days - 1)
    found = [row[0] for row in con.execute(audit_sql("unreachable_days"),
                                           {"before": oldest_fetchable - timedelta(days=1)}).fetchall()]
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
    return frame_of(con, audit_sql("history_completeness"), {"day": day, "window": window_days})


def _money(value: float) -> str:
    return f"{value:,.2f} USD" if abs(value) >= 0.01 or value == 0 else f"{value:.6f} USD"


def _top_rows(frame, mask, order_column: str, limit: int = 3):
    return frame[mask].sort_values(order_column, ascending=False, key=abs).head(limit)


def reconciliation_datasets(con, day: date, config: QualityConfig) -> list[Dataset]:
    """Sources against each other: per-key vs account activity, marts vs activity, /credits and /keys deltas."""
    tol = config.tolerances
    noise = tol.float_noise_usd

    key_frame = key_vs_account(con, day)

    def explain_key_excess(column: str, unit: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            over = frame[column] > (0 if unit == "requests" else noise)
            parts = [f"{r.model_permaslug} via {r.provider_name}: keys {r.key_usage_usd:.6f} vs account "
                     f"{r.account_usage_usd:.6f} USD, {int(r.key_requests)} vs {int(r.account_requests)} requests"
                     for r in _top_rows(frame, over, column).itertuples()]
            return f"per-key activity exceeds the account's on {int(over.sum())} model × provider(s): " + "; ".join(parts)
        return explain

    name = "reconcile.key_vs_account"
    key_checks = [
        new_check(name, "key_usage_within_account", "ExpectColumnValuesToBeBetween",
                  "per-key activity summed never exceeds the account-level activity (usage)",
                  column="key_excess_usage_usd", max_value=noise, explain=explain_key_excess("key_excess_usage_usd", "usd"),
                  compared_values="measured"),
        new_check(name, "key_byok_within_account", "ExpectColumnValuesToBeBetween",
                  "per-key activity summed never exceeds the account-level activity (BYOK)",
                  column="key_excess_byok_usd", max_value=noise, explain=explain_key_excess("key_excess_byok_usd", "usd"),
                  compared_values="measured"),
        new_check(name, "key_requests_within_account", "ExpectColumnValuesToBeBetween",
                  "per-key requests summed never exceed the account-level requests",
                  column="key_excess_requests", max_value=0,
                  explain=explain_key_excess("key_excess_requests", "requests"), compared_values="measured"),
    ]

    marts_frame = marts_vs_account(con, day)
    name = "reconcile.marts_vs_account"

    def explain_marts(column: str, what: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            row = frame.iloc[0]
            return (f"{what}: fct_daily_spend {_money(row.mart_spend_usd)} vs account activity "
                    f"{_money(row.account_usage_usd)}; unattributed remainder {_money(row.unattributed_usd)}, in the "
                    f"mart as '(unattributed)' {_money(row.mart_unattributed_usd)} ({column} = {row[column]:.6g})")
        return explain

    def explain_unattributed(frame) -> str:
        row = frame.iloc[0]
        return (f"{_money(row.unattributed_usd)} ({row.unattributed_share:.1%}) of the day's "
                f"{_money(row.account_usage_usd)} is not attributed to any listed key (deleted keys?); it is kept "
                f"as api_key_hash '(unattributed)'")

    marts_checks = [
        new_check(name, "spend_matches_account", "ExpectColumnValuesToBeBetween",
                  "fct_daily_spend (with '(unattributed)') adds up to the account's activity usage",
                  column="mart_minus_account_usd", min_value=-noise, max_value=noise,
                  explain=explain_marts("mart_minus_account_usd", "mart spend does not add up"), compared_values="measured"),
        new_check(name, "byok_matches_account", "ExpectColumnValuesToBeBetween",
                  "fct_daily_spend BYOK spend adds up to the account's activity",
                  column="mart_minus_account_byok_usd", min_value=-noise, max_value=noise,
                  explain=explain_marts("mart_minus_account_byok_usd", "mart BYOK spend does not add up"), compared_values="measured"),
        new_check(name, "requests_match_account", "ExpectColumnValuesToBeBetween",
                  "fct_daily_spend requests add up to the account's activity requests",
                  column="mart_minus_account_requests", min_value=0, max_value=0,
                  explain=explain_marts("mart_minus_account_requests", "mart requests do not add up"), compared_values="measured"),
        new_check(name, "unattributed_kept_in_mart", "ExpectColumnValuesToBeBetween",
                  "spend no listed key accounts for is kept in fct_daily_spend as '(unattributed)'",
                  column="mart_minus_unattributed_usd", min_value=-noise, max_value=noise,
                  explain=explain_marts("mart_minus_unattributed_usd", "unattributed spend vanished"), compared_values="measured"),
        new_check(name, "unattributed_share", "ExpectColumnValuesToBeBetween",
                  f"unattributed spend is at most {config.unattributed_max_share:.0%} of the day's spend",
                  column="unattributed_share", max_value=config.unattributed_max_share,
                  severity=config.unattributed_severity, explain=explain_unattributed, compared_values="measured"),
    ]

    credits_pair = snapshot_pair(con, day, "/credits", tol)
    credits_frame = credits_vs_activity(con, day, tol, credits_pair)

    def explain_credits(frame) -> str:
        lines = []
        for r in frame[frame.abs_difference_usd > frame.tolerance_usd].itertuples():
            missing = f"; never loaded in between: {r.missing_days}" if r.missing_day_count else ""
            lines.append(f"/credits total_usage rose {_money(r.usage_delta_usd)} from {r.previous_snapshot_date:%Y-%m-%d} "
                         f"to {r.as_of_date:%Y-%m-%d} but /activity sums {_money(r.activity_usage_usd)} (difference "
                         f"{r.difference_usd:+,.2f} USD, tolerance {_money(r.tolerance_usd)}){missing}")
        return "; ".join(lines)

    name = "reconcile.credits_vs_activity"
    credits_checks = [new_check(name, "usage_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                                "the /credits end-of-day total_usage delta matches the activity summed since the previous "
                                f"on-time snapshot (within {tol.credits_usage_abs_usd:g} USD + "
                                f"{tol.credits_usage_relative:.0%})",
                                column_A="tolerance_usd", column_B="abs_difference_usd", or_equal=True,
                                explain=explain_credits, **_snapshot_basis(credits_pair))]

    keys_pair = snapshot_pair(con, day, "/keys", tol)
    keys_frame = key_usage_vs_activity(con, day, tol, keys_pair)

    def explain_keys(difference: str, abs_difference: str, tolerance: str, delta: str, activity: str) -> Callable:
        def explain(frame) -> str:
            bad = frame[frame[abs_difference] > frame[tolerance]]
            rows = bad.sort_values(abs_difference, ascending=False).head(3)
            parts = [f"{r.api_key_name or r.api_key_hash[:12]}: /keys delta {_money(getattr(r, delta))} vs activity "
                     f"{_money(getattr(r, activity))} ({getattr(r, difference):+,.4f} USD)" for r in rows.itertuples()]
            return f"{len(bad)} key(s) whose /keys usage delta disagrees with their activity: " + "; ".join(parts)
        return explain

    name = "reconcile.key_usage_vs_activity"
    keys_checks = [
        new_check(name, "usage_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                  "each key's /keys lifetime usage delta matches its activity since the previous snapshot",
                  column_A="tolerance_usd", column_B="abs_difference_usd", or_equal=True,
                  explain=explain_keys("difference_usd", "abs_difference_usd", "tolerance_usd", "usage_delta_usd",
                                    "activity_usage_usd"), **_snapshot_basis(keys_pair)),
        new_check(name, "byok_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                  "each key's /keys lifetime BYOK usage delta matches its BYOK activity since the previous snapshot",
                  column_A="byok_tolerance_usd", column_B="abs_byok_difference_usd", or_equal=True,
                  explain=explain_keys("byok_difference_usd", "abs_byok_difference_usd", "byok_tolerance_usd",
                                    "byok_delta_usd", "activity_byok_usd"), **_snapshot_basis(keys_pair)),
    ]

    per_request_frame = per_request_vs_activity(con, day, tol)

    def explain_per_request(cost: str, allowed: str, activity: str, what: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            bad = frame[frame[cost] > frame[allowed]]
            return "; ".join(f"{r.project}: {int(r.measured_records if cost.startswith('measured') else r.records)} "
                             f"per-request records {what} {_money(getattr(r, cost))} but activity shows "
                             f"{_money(getattr(r, activity))}" for r in bad.itertuples())
        return explain

    estimated = float(per_request_frame.estimated_cost_usd.sum()) if len(per_request_frame) else 0.0
    total = float(per_request_frame.per_request_cost_usd.sum()) if len(per_request_frame) else 0.0
    share = f"{estimated / total:.0%} of the day's per-request cost" if total > 0 else "none of it"
    slack = (f"(+{tol.per_request_relative:.0%} + {tol.per_request_abs_usd:g} USD)" if tol.per_request_relative
             else f"(+{tol.per_request_abs_usd:g} USD)")
    name = "reconcile.per_request_vs_activity"
    per_request_checks = [
        new_check(name, "measured_cost_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                  f"measured per-request costs summed per project do not exceed its activity credits spend {slack}",
                  column_A="allowed_usd", column_B="measured_cost_usd", or_equal=True,
                  explain=explain_per_request("measured_cost_usd", "allowed_usd", "activity_spend_usd", "measured at"),
                  compared_values="measured"),
        new_check(name, "measured_byok_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                  f"measured per-request BYOK costs summed per project do not exceed its activity BYOK spend {slack}",
                  column_A="byok_allowed_usd", column_B="measured_byok_usd", or_equal=True,
                  explain=explain_per_request("measured_byok_usd", "byok_allowed_usd", "activity_byok_usd",
                                           "measured BYOK at"),
               compared_values="measured"),
        # Allocated costs add up to activity by construction; an estimate is reported, never failing the gate.
        new_check(name, "estimated_cost_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                  f"per-request costs with the estimated ones ({share} is estimated: allocated from activity or "
                  f"imputed) summed per project stay within its activity credits spend {slack}",
                  column_A="allowed_usd", column_B="per_request_cost_usd", or_equal=True, severity="warning",
                  explain=explain_per_request("per_request_cost_usd", "allowed_usd", "activity_spend_usd",
                                           "measured and estimated at"),
               compared_values="estimated"),
    ]

    return [
        Dataset("reconcile.key_vs_account", "reconciliation", key_frame, key_checks,
                ["model_permaslug", "provider_name"]),
        Dataset("reconcile.marts_vs_account", "reconciliation", marts_frame, marts_checks, ["usage_date"]),
        Dataset("reconcile.credits_vs_activity", "reconciliation", credits_frame, credits_checks,
                ["as_of_date", "previous_snapshot_date"]),
        Dataset("reconcile.key_usage_vs_activity", "reconciliation", keys_frame, keys_checks, ["api_key_hash"]),
        Dataset("reconcile.per_request_vs_activity", "reconciliation", per_request_frame, per_request_checks,
                ["project"]),
    ]


def _snapshot_basis(pair: SnapshotPair) -> dict[str, str | None]:
    """compared_values and skip_reason of a snapshot reconciliation."""
    return {"compared_values": "measured" if pair.compared else "skipped", "skip_reason": pair.note}


def freshness_datasets(con, day: date, config: QualityConfig) -> list[Dataset]:
    """Every expected endpoint landed for the day, and no day since the first one is missing."""
    endpoints = endpoint_freshness(con, day, config.expected_endpoints)

    def explain_endpoints(frame) -> str:
        missing = frame[frame.status == "missing"]
        return f"no response landed for {day} from: {', '.join(missing.endpoint)}"

    def explain_gap(frame) -> str:
        return f"{day} is a permanent gap: it left the API's window before it was captured (meta.extraction_gaps)"

    name = "freshness.endpoints"
    endpoint_checks = [
        new_check(name, "every_endpoint_landed", "ExpectColumnValuesToBeInSet",
                  "every expected endpoint landed for the day (or the day is a recorded permanent gap)",
                  column="status", value_set=["landed", "permanent_gap"], explain=explain_endpoints),
        new_check(name, "day_not_a_gap", "ExpectColumnValuesToNotBeInSet",
                  "the day was captured (not a permanent gap)", column="status", value_set=["permanent_gap"],
                  severity="warning", explain=explain_gap),
    ]
    history = history_completeness(con, day, config.activity_window_days)

    def explain_history(frame) -> str:
        missing = list(frame[frame.status == "missing"].usage_date.dt.date)
        first, last = min(missing), max(missing)
        return (f"{len(missing)} day(s) inside the API window were never loaded: "
                f"{', '.join(d.isoformat() for d in missing[:10])}{' …' if len(missing) > 10 else ''} "
                f"(backfill with `openrouter-spend run --start {first} --end {last}`)")

    name = "freshness.history"
    history_checks = [new_check(name, "no_missing_days", "ExpectColumnValuesToBeInSet",
                                "every day since the first one is loaded or a recorded permanent gap",
                                column="status", value_set=["loaded", "permanent_gap"],
                                severity=config.missing_day_severity, explain=explain_history)]
    return [Dataset("freshness.endpoints", "freshness", endpoints, endpoint_checks, ["endpoint"]),
            Dataset("freshness.history", "freshness", history, history_checks, ["usage_date"])]
