"""The digest's CSV files: one table per question finance asks, every row dated, numbers as in the marts.

Money and shares are rounded to 6 decimals (a millionth of a dollar), so sums agree with the marts to well
under a cent while the files stay readable; missing values are empty cells, never 0. Text cells that a
spreadsheet would run as a formula (a key or project named "=HYPERLINK(...)") start with a single quote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openrouter_spend.escaping import csv_cell
from openrouter_spend.reports.digest.data import DigestData
from openrouter_spend.reports.digest.findings import why

ALERT_COLUMNS = ("alert_id", "rule_id", "usage_date", "severity", "project", "budget_owner", "metric",
                 "observed_value", "expected_value", "threshold_value", "impact_usd", "explanation", "status",
                 "channels", "first_seen_date")


@dataclass(frozen=True)
class CsvTable:
    """One CSV file: its name, a one-line description for the digest's file list, header and rows."""

    name: str
    description: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]

    def render(self) -> bytes:
        """The file's bytes: a header, then one line per row, '\\n' line ends, UTF-8."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([cell(row.get(column)) for column in self.columns])
        return buffer.getvalue().encode("utf-8")


def cell(value: Any) -> str:
    """One CSV cell: empty for missing, ISO dates, floats rounded to 6 decimals, text neutralised for spreadsheets."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{round(value, 6):.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "; ".join(cell(item) for item in value)
    if isinstance(value, str):
        return csv_cell(value)
    return str(value)


def _dated(day: date, rows: Sequence[dict[str, Any]],
           extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [{"usage_date": day, **row, **(extra(row) if extra else {})} for row in rows]


def build(data: DigestData) -> list[CsvTable]:
    """The five CSV tables of the day."""
    day = data.day
    budgets = CsvTable(
        "spend_by_owner.csv",
        "Spend per project and budget owner: the day, week and month to date against the budgets "
        "(launch windows applied), with the month-end forecast. '(unowned)' has no budget.",
        ("usage_date", "project", "team", "budget_owner", "budget_owner_contact", "status", "spend_usd",
         "daily_budget_usd", "effective_daily_budget_usd", "daily_budget_used_ratio", "week_to_date_spend_usd",
         "weekly_budget_usd", "effective_weekly_budget_usd", "weekly_budget_used_ratio", "month_to_date_spend_usd",
         "monthly_budget_usd", "effective_monthly_budget_usd", "monthly_budget_used_ratio", "velocity_multiplier",
         "run_rate_7d_usd", "days_left_in_month", "forecast_month_end_spend_usd", "forecast_monthly_budget_ratio"),
        _dated(day, data.budgets),
    )
    movers = CsvTable(
        "top_movers.csv",
        "Each project's change against the day before and the same weekday a week before, split into volume, "
        "project mix (account only), context, mix/price and waste effects (they add up to the change), with the "
        "annotations that explain it.",
        ("usage_date", "project", "budget_owner", "spend_usd", "prior_spend_usd", "delta_usd", "volume_effect_usd",
         "project_mix_effect_usd", "context_effect_usd", "mix_price_effect_usd", "waste_effect_usd",
         "wasted_spend_usd", "decomposition_method", "prior_week_spend_usd", "wow_delta_usd",
         "wow_volume_effect_usd", "wow_project_mix_effect_usd", "wow_context_effect_usd",
         "wow_mix_price_effect_usd", "wow_waste_effect_usd", "explained_by", "explanation", "why"),
        _dated(day, data.changes, lambda row: {
            "explained_by": [a["annotation_id"] for a in row["annotations"]],
            "explanation": [a["description"] for a in row["annotations"]],
            "why": why(row) if row.get("delta_usd") is not None else None,
        }),
    )
    columns = tuple(data.alert_columns) if data.alert_columns else ALERT_COLUMNS
    alerts = CsvTable(
        "alerts.csv",
        "The alert ledger of the day: fired, suppressed (explained by an annotation) and blocked (data failed "
        "the quality gate) alerts.",
        columns,
        [{**row, "usage_date": day} for row in data.alerts],
    )
    mix = CsvTable(
        "provider_mix.csv",
        "Which providers served each project's spend and requests (project '*' = whole account), with the drift "
        "against the previous 7 days.",
        ("usage_date", "project", "provider_name", "spend_usd", "byok_spend_usd", "total_spend_usd", "requests",
         "spend_share", "total_spend_share", "request_share", "prior_7d_spend_share", "spend_share_change_7d"),
        data.provider_mix,
    )
    economics_columns = tuple(data.unit_economics[0]) if data.unit_economics else (
        "usage_date", "project", "spend_usd", "requests", "total_tokens", "cost_per_request_usd",
        "cost_per_1k_tokens_usd", "tokens_per_request", "premium_spend_share", "fallback_request_share",
        "generation_coverage_share", "accepted_results", "cost_per_accepted_result_usd")
    economics = CsvTable(
        "unit_economics.csv",
        "Unit economics per project and for the account ('*'): cost per request and per 1k tokens, tokens per "
        "request, premium share, unowned and wasted spend; per-request columns are empty until that data exists.",
        economics_columns,
        data.unit_economics,
    )
    return [budgets, movers, alerts, mix, economics]
