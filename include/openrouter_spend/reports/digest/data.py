"""Read everything one day's digest shows from the marts, tolerating the tables later issues fill.

Every figure comes from `marts.*` (docs/marts.md); this module only selects, joins the annotations
calendar and derives the short "what needs attention" list. Nothing here formats or renders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from openrouter_spend.alerts.rules import annotation_explains
from openrouter_spend.reports.digest import fallbacks
from openrouter_spend.reports.digest.queries import columns_of, has_table, rows

# How many days the trend charts look back (the API keeps 30 completed days).
TREND_DAYS = 30
# A project move is listed under "what needs attention" when it is at least this many dollars and this
# fraction of the previous day's spend, and no annotation explains it.
UNEXPLAINED_MOVE_MIN_USD = 5.0
UNEXPLAINED_MOVE_MIN_SHARE = 0.15
# A premium-share rise of this many share points (as a fraction) over the 28-day baseline is worth a look.
PREMIUM_SHARE_RISE = 0.10
# A provider's share of a project's spend moving by at least this fraction, and moving at least this many
# dollars of the day's spend, is a provider-mix shift worth naming.
PROVIDER_SHIFT_MIN_CHANGE = 0.10
PROVIDER_SHIFT_MIN_USD = 2.0
# Projects spending less than this on the day are left out of the premium findings (shares of pennies).
PREMIUM_MIN_SPEND_USD = 1.0
# Runway below this many days asks for a top-up; below RUNWAY_CRITICAL_DAYS it is urgent.
RUNWAY_WARN_DAYS = 14.0
RUNWAY_CRITICAL_DAYS = 7.0
ACCOUNT = "*"
UNOWNED = "(unowned)"


@dataclass(frozen=True)
class Finding:
    """One line of "what needs attention": severity (critical, warning, info), text and who acts."""

    severity: str
    text: str
    owner: str | None = None


@dataclass
class DigestData:
    """Everything the digest shows for one UTC day, read from the marts."""

    day: date
    source: str
    has_data: bool
    balance: dict[str, Any] | None
    totals: dict[str, Any]
    month: dict[str, Any]
    budgets: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    premium: list[dict[str, Any]]
    provider_mix: list[dict[str, Any]]
    unit_economics: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    alerts_state: str
    alert_columns: list[str]
    quality: dict[str, Any] | None
    quality_state: str
    blind_spot_rows: list[dict[str, Any]]
    blind_spots: list[str]
    waste: list[dict[str, Any]]
    unowned_keys: list[dict[str, Any]]
    unused_keys: list[dict[str, Any]]
    fallback: list[dict[str, Any]]
    trend: list[dict[str, Any]] = field(default_factory=list)
    balance_trend: list[dict[str, Any]] = field(default_factory=list)
    premium_trend: list[dict[str, Any]] = field(default_factory=list)
    fallback_trend: list[dict[str, Any]] = field(default_factory=list)
    provider_shifts: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # The day's savings opportunities, ranked and described (savings.py).
    savings: list[dict[str, Any]] = field(default_factory=list)
    # Loaded days among the 28 before the day: the premium baseline pools only those.
    baseline_days: int = 28

    @property
    def baseline_label(self) -> str:
        """'the previous 28 days', or how many there really were when less history is loaded."""
        if self.baseline_days >= 28:
            return "the previous 28 days"
        return f"the previous {self.baseline_days} day{'s' if self.baseline_days != 1 else ''} (all the history loaded)"


def collect(con, day: date, source: str = "") -> DigestData:
    """Read the day's digest content from an open (read-only) warehouse connection."""
    from openrouter_spend.reports.digest.blind_spots import blind_spot_rows, blind_spots
    from openrouter_spend.reports.digest.findings import findings  # both read this module's vocabulary
    from openrouter_spend.reports.digest.savings import read as savings

    balance = next(iter(rows(con, "select * from marts.fct_credit_balance where as_of_date = ?", [day])), None)
    totals = rows(con, """
        select coalesce(sum(spend_usd), 0) as spend_usd, coalesce(sum(byok_spend_usd), 0) as byok_spend_usd,
               coalesce(sum(requests), 0) as requests, count(distinct api_key_hash) as active_keys,
               count(*) as spend_rows
        from marts.fct_daily_spend where usage_date = ?""", [day])[0]
    data = DigestData(
        day=day,
        source=source,
        has_data=bool(totals["spend_rows"]) or balance is not None,
        balance=balance,
        totals=totals,
        month=_month(con, day),
        budgets=_budgets(con, day),
        changes=_changes(con, day),
        premium=_premium(con, day),
        provider_mix=rows(con, """
            select * from marts.fct_provider_mix_daily where usage_date = ?
            order by project = '*' desc, project, spend_usd desc, provider_name""", [day]),
        unit_economics=rows(con, """
            select * from marts.rpt_unit_economics_daily where usage_date = ?
            order by project = '*' desc, spend_usd desc, project""", [day]),
        alerts=[],
        alerts_state="not_evaluated",
        alert_columns=columns_of(con, "marts", "fct_alerts") if has_table(con, "marts", "fct_alerts") else [],
        quality=None,
        quality_state="not_run",
        blind_spot_rows=[],
        blind_spots=[],
        waste=rows(con, """
            select api_key_name, api_key_hash, project, requests, baseline_daily_requests, request_ratio,
                   spend_usd, wasted_requests, wasted_spend_usd, waste_method, per_request_requests,
                   per_request_coverage_share, wasted_spend_ci_low_usd, wasted_spend_ci_high_usd
            from marts.rpt_key_usage_daily where usage_date = ? and wasted_spend_usd > 0
            order by wasted_spend_usd desc, api_key_hash""", [day]),
        unowned_keys=rows(con, """
            select coalesce(api_key_name, api_key_hash) as api_key, workspace_name,
                   sum(spend_usd) as spend_usd, sum(requests) as requests
            from marts.fct_daily_spend where usage_date = ? and not is_owned
            group by all order by spend_usd desc, api_key""", [day]),
        unused_keys=rows(con, """
            select api_key_name, project, budget_owner, days_since_last_use, unused_after_days, created_at,
                   as_of_date
            from marts.dim_api_key where is_unused order by project, api_key_name"""),
        fallback=fallbacks.by_project(con, day),
    )
    data.alerts, data.alerts_state = _alerts(con, day)
    data.quality, data.quality_state = _quality(con, day)
    data.blind_spot_rows = blind_spot_rows(con, day)
    data.trend = _trend(con, day)
    data.balance_trend = rows(con, """
        select as_of_date, balance_usd, burn_usd, burn_7d_avg_usd, topup_usd, runway_days
        from marts.fct_credit_balance where as_of_date between ? and ? order by as_of_date""",
        [day - timedelta(days=TREND_DAYS - 1), day])
    data.premium_trend = rows(con, """
        select usage_date, project, spend_usd, premium_spend_share, premium_spend_share_baseline_28d
        from marts.rpt_unit_economics_daily where usage_date between ? and ? order by usage_date, project""",
        [day - timedelta(days=TREND_DAYS - 1), day])
    data.fallback_trend = fallbacks.trend(con, day - timedelta(days=TREND_DAYS - 1), day)
    data.baseline_days = con.execute(
        "select count(distinct usage_date) from marts.fct_daily_spend where usage_date between ? and ?",
        [day - timedelta(days=28), day - timedelta(days=1)]).fetchone()[0]
    data.provider_shifts = _provider_shifts(con, day, data.provider_mix)
    data.savings = savings(con, day)
    data.blind_spots = blind_spots(con, data)
    data.findings = findings(data)
    return data


def _month(con, day: date) -> dict[str, Any]:
    first = day.replace(day=1)
    spend = con.execute(
        "select coalesce(sum(spend_usd), 0), count(distinct usage_date) from marts.fct_daily_spend "
        "where usage_date between ? and ?", [first, day]).fetchone()
    loaded = con.execute(
        "select count(*) from marts.fct_credit_balance where as_of_date between ? and ?", [first, day]).fetchone()[0]
    loaded_days = max(int(spend[1]), int(loaded))
    forecast = con.execute(
        "select sum(forecast_month_end_spend_usd), sum(monthly_budget_usd) from marts.rpt_budget_status_daily "
        "where usage_date = ?", [day]).fetchone()
    gaps = []
    if has_table(con, "meta", "extraction_gaps"):
        gaps = [row[0] for row in con.execute(
            "select distinct partition_date from meta.extraction_gaps where partition_date between ? and ? "
            "order by 1", [first, day]).fetchall()]
    return {"first_day": first, "month_to_date_usd": float(spend[0]), "days_elapsed": (day - first).days + 1,
            "loaded_days": loaded_days, "gap_days": gaps,
            "configured_forecast_usd": forecast[0], "configured_monthly_budget_usd": forecast[1]}


def _budgets(con, day: date) -> list[dict[str, Any]]:
    configured = rows(con, """
        select project, team, budget_owner, budget_owner_contact, spend_usd, week_to_date_spend_usd,
               month_to_date_spend_usd, velocity_multiplier, daily_budget_usd, effective_daily_budget_usd,
               weekly_budget_usd, effective_weekly_budget_usd, monthly_budget_usd, effective_monthly_budget_usd,
               daily_budget_used_ratio, weekly_budget_used_ratio, monthly_budget_used_ratio, run_rate_7d_usd,
               days_left_in_month, forecast_month_end_spend_usd, forecast_monthly_budget_ratio
        from marts.rpt_budget_status_daily where usage_date = ?
        order by spend_usd desc, project""", [day])
    unowned = rows(con, """
        select sum(spend_usd) filter (where usage_date = ?) as spend_usd,
               sum(spend_usd) filter (where usage_date >= date_trunc('week', cast(? as date))) as week_to_date_spend_usd,
               sum(spend_usd) as month_to_date_spend_usd
        from marts.fct_daily_spend
        where not is_owned and usage_date between date_trunc('month', cast(? as date)) and ?""",
        [day, day, day, day])[0]
    if unowned["month_to_date_spend_usd"]:
        configured.append({
            "project": UNOWNED, "team": None, "budget_owner": None, "budget_owner_contact": None,
            "spend_usd": unowned["spend_usd"] or 0.0,
            "week_to_date_spend_usd": unowned["week_to_date_spend_usd"] or 0.0,
            "month_to_date_spend_usd": unowned["month_to_date_spend_usd"] or 0.0,
        })
    for row in configured:
        row["status"] = budget_status(row)
    return configured


def budget_status(row: dict[str, Any]) -> str:
    """over, at_risk, ok or no_owner/no_budget, from the day's and the forecast month's budget ratios."""
    if row["project"] == UNOWNED:
        return "no_owner"
    ratios = [row.get(name) for name in ("daily_budget_used_ratio", "weekly_budget_used_ratio",
                                         "monthly_budget_used_ratio")]
    forecast = row.get("forecast_monthly_budget_ratio")
    if all(r is None for r in [*ratios, forecast]):
        return "no_budget"
    if any(r is not None and r > 1 for r in ratios):
        return "over"
    if forecast is not None and forecast > 1:
        return "at_risk"
    return "ok"


def _annotations(con, day: date, project: str, signal: str) -> list[dict[str, Any]]:
    """The annotations covering the day, project and signal, each with the project's level before it started."""
    return rows(con, """
        select notes.annotation_id, notes.kind, notes.project, notes.description, notes.expected_change,
               notes.start_date,
               (select median(daily.spend_usd) from (
                    select usage_date, sum(spend_usd) as spend_usd from marts.fct_daily_spend
                    where project = $project and usage_date between notes.start_date - 7 and notes.start_date - 1
                    group by usage_date) as daily) as spend_before_usd
        from marts.dim_annotation as notes
        where $day between notes.start_date and notes.end_date and notes.project in ($project, '*')
            and list_contains(notes.signals, $signal)
        order by notes.annotation_id""", {"day": day, "project": project, "signal": signal})


def _split_explained(row: dict[str, Any], covering: list[dict[str, Any]], move: float | None,
                     level_ratio: Callable[[dict[str, Any]], float | None]) -> None:
    """Keep in row["annotations"] only those that explain the move in direction and size; the rest go to
    row["annotations_against"] (a move against an announcement is news). `move` is the signed change when
    it is significant, else 0 (a small move has no direction; only the level is checked)."""
    explaining, against = [], []
    for note in covering:
        expected = note.get("expected_change")
        announced_rise = expected is None or expected > 1
        if move is not None and move != 0 and (move > 0) != announced_rise:
            fits = False
        else:
            ratio = level_ratio(note) if expected is not None else None
            fits = ratio is None or annotation_explains(expected, ratio)
        (explaining if fits else against).append(note)
    row["annotations"], row["annotations_against"] = explaining, against


def is_significant_move(delta: float | None, prior: float | None) -> bool:
    """A project's day-over-day move worth explaining: at least $5 and 15% of the day before."""
    return (delta is not None and prior is not None and abs(delta) >= UNEXPLAINED_MOVE_MIN_USD
            and abs(delta) >= UNEXPLAINED_MOVE_MIN_SHARE * prior)


def _changes(con, day: date) -> list[dict[str, Any]]:
    changes = rows(con, """
        select c.project, c.spend_usd, c.prior_spend_usd, c.delta_usd, c.volume_effect_usd,
               c.project_mix_effect_usd, c.context_effect_usd, c.mix_price_effect_usd, c.waste_effect_usd,
               c.wasted_spend_usd, c.decomposition_method, c.prior_week_spend_usd, c.wow_delta_usd,
               c.wow_volume_effect_usd, c.wow_project_mix_effect_usd, c.wow_context_effect_usd,
               c.wow_mix_price_effect_usd, c.wow_waste_effect_usd, b.budget_owner
        from marts.rpt_spend_change c
        left join marts.rpt_budget_status_daily b on b.usage_date = c.usage_date and b.project = c.project
        where c.usage_date = ?
        order by c.project = '*' desc, abs(coalesce(c.delta_usd, 0)) desc, c.project""", [day])
    for change in changes:
        # A day-over-day move is explained only in the announced direction, and only while the day's spend
        # sits roughly at the announced multiple of the level before the annotation started.
        def level_ratio(note: dict[str, Any], spend: float = change["spend_usd"] or 0.0) -> float | None:
            before = note.get("spend_before_usd")
            return spend / before if before else None

        delta = change.get("delta_usd")
        move = delta if is_significant_move(delta, change.get("prior_spend_usd")) else 0
        _split_explained(change, _annotations(con, day, change["project"], "spend"), move, level_ratio)
    return changes


def _premium(con, day: date) -> list[dict[str, Any]]:
    premium = rows(con, """
        select project, budget_owner, spend_usd, premium_spend_usd, premium_spend_share,
               premium_spend_share_baseline_28d, premium_spend_share_change
        from marts.rpt_unit_economics_daily where usage_date = ?
        order by project = '*' desc, abs(coalesce(premium_spend_share_change, 0)) desc, project""", [day])
    for row in premium:
        baseline, current = row.get("premium_spend_share_baseline_28d"), row.get("premium_spend_share")
        ratio = current / baseline if baseline and current is not None else None
        change = row.get("premium_spend_share_change")
        move = change if change is not None and abs(change) >= PREMIUM_SHARE_RISE else 0
        _split_explained(row, _annotations(con, day, row["project"], "premium_share"), move,
                         lambda note, ratio=ratio: ratio)
    return premium


def _provider_shifts(con, day: date, mix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Within-project provider shifts that moved real money, largest first, with provider_mix annotations."""
    project_spend: dict[str, float] = {}
    for row in mix:
        project_spend[row["project"]] = project_spend.get(row["project"], 0.0) + (row["spend_usd"] or 0.0)
    shifts = []
    for row in mix:
        change = row.get("spend_share_change_7d")
        if row["project"] == ACCOUNT or change is None or abs(change) < PROVIDER_SHIFT_MIN_CHANGE:
            continue
        moved = abs(change) * project_spend[row["project"]]
        if moved >= PROVIDER_SHIFT_MIN_USD:
            shifts.append({**row, "moved_usd": moved,
                           "annotations": _annotations(con, day, row["project"], "provider_mix")})
    return sorted(shifts, key=lambda row: (-row["moved_usd"], row["project"], row["provider_name"]))


def _trend(con, day: date) -> list[dict[str, Any]]:
    return rows(con, """
        select usage_date, project, sum(spend_usd) as spend_usd
        from marts.fct_daily_spend where usage_date between ? and ?
        group by all order by usage_date, project""", [day - timedelta(days=TREND_DAYS - 1), day])


def _alerts(con, day: date) -> tuple[list[dict[str, Any]], str]:
    """The day's alert ledger and whether the rules ran: fired, none_fired or not_evaluated."""
    if not has_table(con, "marts", "fct_alerts"):
        return [], "not_evaluated"
    alerts = rows(con, """
        select * from marts.fct_alerts where usage_date = ?
        order by case status when 'fired' then 0 when 'blocked' then 1 else 2 end,
                 case severity when 'critical' then 0 when 'high' then 1 when 'warning' then 2
                                when 'medium' then 3 else 4 end,
                 abs(coalesce(impact_usd, 0)) desc, alert_id""", [day])
    if any(alert.get("status") == "fired" for alert in alerts):
        return alerts, "fired"
    if alerts or _rules_evaluated(con, day):
        return alerts, "none_fired"
    return alerts, "not_evaluated"


# Where the alerting step records that it evaluated a day (one row per evaluation, even when nothing fired).
RULE_RUN_TABLES = (("marts", "fct_alert_runs"),)


def _rules_evaluated(con, day: date) -> bool:
    for schema, name in RULE_RUN_TABLES:
        if has_table(con, schema, name) and "usage_date" in columns_of(con, schema, name):
            return bool(con.execute(f'select count(*) from "{schema}"."{name}" where usage_date = ?',
                                    [day]).fetchone()[0])
    return False


def _quality(con, day: date) -> tuple[dict[str, Any] | None, str]:
    """The newest quality-gate run for the day: passed, failed, or not_run when the gate never ran."""
    if not has_table(con, "marts", "fct_quality_runs"):
        return None, "not_run"
    names = columns_of(con, "marts", "fct_quality_runs")
    order = next((f"{name} desc" for name in ("validated_at", "finished_at", "started_at") if name in names),
                 "run_id desc")
    run = next(iter(rows(con, f"select * from marts.fct_quality_runs where usage_date = ? order by {order} limit 1",
                         [day])), None)
    if run is None:
        return None, "not_run"
    run["failed_checks"] = []
    if has_table(con, "marts", "fct_quality_results"):
        run["failed_checks"] = rows(con, """
            select check_id, severity, description, message from marts.fct_quality_results
            where run_id = ? and usage_date = ? and not success
            order by severity = 'error' desc, check_id limit 8""", [run["run_id"], day])
    return run, "failed" if str(run.get("status")).lower() == "failed" else "passed"
