"""digest.html: one self-contained page (embedded CSS, charts as data URIs) that reads offline, in mail and on A4.

The page is the template templates/digest/digest.html.j2 (autoescaped: every string from the warehouse is
text). Layout uses tables rather than CSS grid so mail clients render it. Sections follow the order finance
reads: headline, owners and budgets, what changed and why, savings, alerts, blind spots and data quality, then the
files in the folder. This module only picks the rows each section shows.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from openrouter_spend import rendering
from openrouter_spend.reports.digest.charts import Chart
from openrouter_spend.reports.digest.data import (
    ACCOUNT,
    PREMIUM_MIN_SPEND_USD,
    PREMIUM_SHARE_RISE,
    UNOWNED,
    DigestData,
    is_significant_move,
)
from openrouter_spend.reports.digest.findings import announcement, correlation_text, waste_basis, why
from openrouter_spend.reports.digest.formatting import DASH
from openrouter_spend.reports.digest.savings import summary as savings_summary
from openrouter_spend.reports.digest.tables import CsvTable

# The page's style sheet, embedded so the file reads offline and in mail.
CSS = (Path(__file__).resolve().parent / "digest.css").read_text()

STATUS_LABELS = {"over": "Over budget", "at_risk": "Forecast over", "ok": "On track", "no_owner": "No owner",
                 "no_budget": "No budget"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
BLIND_SPOT_COLUMNS = {"project", "spend_usd", "byok_spend_share", "per_request_request_coverage_share",
                      "unattributed_spend_usd", "blind_spots"}
TEMPLATE = "digest/digest.html.j2"


def render(data: DigestData, charts: Sequence[Chart], tables: Sequence[CsvTable]) -> str:
    """The whole page as a string."""
    return rendering.render(
        TEMPLATE, data=data, tables=tables, chart_list=charts, charts={c.name: c for c in charts},
        chart_data={c.name: base64.b64encode(c.png).decode("ascii") for c in charts},
        css=Markup(CSS), headline=_headline(data), owners=_owners(data), changes=movers_and_premium(data),
        alerts_fired=sum(1 for a in data.alerts if a.get("status") == "fired"), savings=savings_summary(data.savings),
        blind_spot_table=bool(data.blind_spot_rows) and BLIND_SPOT_COLUMNS <= set(data.blind_spot_rows[0]),
        **helpers())


def helpers() -> dict[str, Any]:
    """The names and sentence builders the digest templates share."""
    return {"ACCOUNT": ACCOUNT, "UNOWNED": UNOWNED, "DASH": DASH, "STATUS_LABELS": STATUS_LABELS,
            "PREMIUM_SHARE_RISE": PREMIUM_SHARE_RISE, "is_significant_move": is_significant_move,
            "announcement": announcement, "correlation_text": correlation_text, "waste_basis": waste_basis,
            "why": why}


def _trend_class(change: float | None) -> str:
    if change is None:
        return ""
    return "up" if change > 0.005 else "down" if change < -0.005 else ""


def _headline(data: DigestData) -> dict[str, Any]:
    balance = data.balance or {}
    average = balance.get("burn_7d_avg_usd")
    runway = balance.get("runway_days")
    return {
        "trend_class": _trend_class(data.totals["spend_usd"] / average - 1 if average else None) if data.has_data
        else "",
        "runway_class": ("critical" if runway is not None and runway < 7 else
                         "warning" if runway is not None and runway < 14 else ""),
        "last_topup": next((row for row in reversed(data.balance_trend) if row.get("topup_usd")), None),
        "findings": sorted(data.findings, key=lambda finding: SEVERITY_ORDER.get(finding.severity, 3)),
    }


def _owners(data: DigestData) -> dict[str, float]:
    return {"total_day": sum(row["spend_usd"] or 0 for row in data.budgets),
            "total_month": sum(row["month_to_date_spend_usd"] or 0 for row in data.budgets)}


def movers_and_premium(data: DigestData) -> dict[str, Any]:
    """The rows section 3 shows: the account line, the projects, premium share and provider mix."""
    movers = [c for c in data.changes if c["project"] != ACCOUNT]
    providers = [row for row in data.provider_mix if row["project"] == ACCOUNT]
    explained = {a["annotation_id"]: a for row in data.provider_shifts for a in row["annotations"]}
    return {
        "account": next((c for c in data.changes if c["project"] == ACCOUNT), None),
        "movers": movers,
        "any_move": any(c.get("delta_usd") is not None for c in movers),
        "premium": next((p for p in data.premium if p["project"] == ACCOUNT), None),
        "premium_projects": sorted(
            (p for p in data.premium if p["project"] != ACCOUNT
             and (p.get("spend_usd") or 0) >= PREMIUM_MIN_SPEND_USD
             and ((p.get("premium_spend_usd") or 0) > 0 or (p.get("premium_spend_share_baseline_28d") or 0) > 0)),
            key=lambda p: (-(p.get("premium_spend_usd") or 0), p["project"])),
        "provider_top": max(providers, key=lambda row: (row.get("spend_share") or 0, row["provider_name"]))
        if providers else None,
        "provider_annotations": [a for _, a in sorted(explained.items())],
    }
