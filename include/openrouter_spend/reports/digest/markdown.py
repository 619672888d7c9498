"""digest.md: the same digest for chat and tickets, in the same order, charts linked as files beside it.

It is also the plain-text part of the digest e-mail. Every text that carries a name (projects, owners, keys,
annotations, findings) goes through `md` (escaping.markdown), so a name cannot become markup, raw HTML or a
link, nor break a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openrouter_spend.escaping import markdown
from openrouter_spend.reports.digest.charts import Chart
from openrouter_spend.reports.digest.data import ACCOUNT, UNOWNED, DigestData, is_significant_move
from openrouter_spend.reports.digest.findings import announcement, correlation_text, waste_basis, why
from openrouter_spend.reports.digest.formatting import (
    DASH,
    count,
    long_day,
    money,
    points,
    share,
    share_with_interval,
    short_day,
    signed_money,
    signed_share,
)
from openrouter_spend.reports.digest.formatting import (
    coverage as coverage_text,
)
from openrouter_spend.reports.digest.html import STATUS_LABELS
from openrouter_spend.reports.digest.tables import CsvTable

SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


def md(value: Any) -> str:
    """Text safe inline in Markdown (a table cell, a list item); a dash for missing."""
    if value is None:
        return DASH
    return markdown(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def render(data: DigestData, charts: Sequence[Chart], tables: Sequence[CsvTable]) -> str:
    """The whole Markdown document."""
    chart = {c.name: c for c in charts}
    out = [f"# OpenRouter spend — {long_day(data.day)}", "",
           f"Daily finance digest for the UTC day {data.day.isoformat()}. Amounts are US dollars of OpenRouter "
           f"credits unless marked BYOK. Source: {data.source}.", ""]
    out += ["## 1. Headline", ""]
    if not data.has_data:
        out += [f"No usage or credit data is loaded for {long_day(data.day)}: every figure is unknown, not zero.", ""]
    else:
        balance = data.balance or {}
        spend, average = data.totals["spend_usd"], balance.get("burn_7d_avg_usd")
        runway = balance.get("runway_days")
        out += [
            f"- **Spent:** {money(spend)}" + (f" ({signed_share(spend / average - 1)} vs the 7-day average of "
                                              f"{money(average)})" if average else ""),
            f"- **Credit balance:** {money(balance.get('balance_usd'))}"
            + (f" (after a {money(balance['topup_usd'])} top-up)" if balance.get("topup_usd") else "")
            + (" (unknown: this day's /credits snapshot was fetched after the following day ended)"
               if balance and balance.get("balance_usd") is None else ""),
            "- **Runway:** " + (f"{runway:.1f} days, runs out around "
                                 f"{short_day(balance.get('projected_depletion_date'))} at the 7-day burn"
                                 if runway is not None else "unknown"),
            f"- **Month to date:** {money(data.month['month_to_date_usd'])} "
            f"({data.month['loaded_days']} of {data.month['days_elapsed']} days loaded)",
            f"- {count(data.totals['requests'])} requests from {count(data.totals['active_keys'])} API keys"
            + (f"; plus {money(data.totals['byok_spend_usd'])} BYOK inference billed by providers directly "
               "(estimate, not in credits)" if data.totals["byok_spend_usd"] else ""),
            "",
        ]
        out += ["### What needs attention", ""]
        out += [f"- {SEVERITY_MARK.get(f.severity, '-')} {md(f.text)}" + (f" → {md(f.owner)}" if f.owner else "")
                for f in data.findings] or ["- Nothing stands out."]
        out += [""]
        out += _image(chart.get("burn_and_runway.png"))
    out += ["## 2. Owners and budget status", ""]
    if data.budgets:
        rows = []
        for row in data.budgets:
            daily = row.get("effective_daily_budget_usd")
            rows.append([
                md(row["project"]),
                md(row.get("budget_owner") if row["project"] != UNOWNED else "nobody"),
                money(row["spend_usd"]) + (f" of {money(daily, 0)}" if daily is not None else ""),
                money(row["month_to_date_spend_usd"]),
                money(row.get("forecast_month_end_spend_usd")),
                share(row.get("forecast_monthly_budget_ratio")),
                STATUS_LABELS[row["status"]],
            ])
        out += _table(["Project", "Budget owner", "Spent today", "Month to date", "Month-end forecast",
                       "Forecast vs budget", "Status"], rows, [False, False, True, True, True, True, False])
    else:
        out += ["No configured projects have budget figures for this day.", ""]
    out += _image(chart.get("spend_by_project.png"))
    out += ["## 3. What changed and why", ""]
    account = next((c for c in data.changes if c["project"] == ACCOUNT), None)
    if account is None or account.get("delta_usd") is None:
        out += ["No comparison: the day before is not loaded.", ""]
    else:
        out += [f"Account spend changed {signed_money(account['delta_usd'])} against the day before "
                f"({money(account['prior_spend_usd'])}): {why(account)}."
                + (f" The day's wasted spend (loops, duplicates, retries) is {money(account['wasted_spend_usd'])}."
                   if account.get("wasted_spend_usd")
                   and abs(account["wasted_spend_usd"] - (account.get("waste_effect_usd") or 0)) >= 0.005 else "")
                + (f" Week over week: {signed_money(account['wow_delta_usd'])}, {why(account, 'wow_')}."
                   if account.get("wow_delta_usd") is not None else ""), ""]
    movers = [c for c in data.changes if c["project"] != ACCOUNT]
    if any(c.get("delta_usd") is not None for c in movers):
        rows = [[md(c["project"]), money(c["spend_usd"]), signed_money(c.get("delta_usd")),
                 signed_money(c.get("volume_effect_usd")), signed_money(c.get("context_effect_usd")),
                 signed_money(c.get("mix_price_effect_usd")), signed_money(c.get("waste_effect_usd")),
                 md("; ".join(a["description"] for a in c["annotations"])
                    or (is_significant_move(c.get("delta_usd"), c.get("prior_spend_usd"))
                        and "; ".join(f"unexplained: {a['annotation_id']} announced {announcement(a)}"
                                      for a in c.get("annotations_against", ())))
                    or DASH)] for c in movers]
        out += _table(["Project", "Spent", "vs day before", "Volume", "Context", "Mix/price", "Waste", "Explained by"],
                      rows, [False, True, True, True, True, True, True, False])
    premium = next((p for p in data.premium if p["project"] == ACCOUNT), None)
    if premium and premium.get("premium_spend_share") is not None:
        out += [f"Premium models took {share(premium['premium_spend_share'])} of credit spend against "
                f"{share(premium.get('premium_spend_share_baseline_28d'))} over the previous 28 days "
                f"({points(premium.get('premium_spend_share_change'))}).", ""]
    out += _image(chart.get("premium_share.png"))
    out += _image(chart.get("provider_mix.png"))
    out += ["## 4. Alerts", ""]
    if data.alerts_state == "not_evaluated":
        out += ["**No alerts evaluated:** the alert rules have not run for this day, so an empty list means nothing.",
                ""]
    else:
        if data.alerts_state == "none_fired":
            out += ["Alert rules ran; none fired.", ""]
        if data.alerts:
            rows = [[md(a.get("status")), md(a.get("severity")), md(a.get("rule_id")), md(a.get("project")),
                     md(a.get("budget_owner")), signed_money(a.get("impact_usd")),
                     md(a.get("explanation") or correlation_text(a, data.alerts) or None)]
                    for a in data.alerts]
            out += _table(["Status", "Severity", "Rule", "Project", "Owner", "Impact", "Explanation"], rows,
                          [False, False, False, False, False, True, False])
    out += ["## 5. Blind spots and data quality", ""]
    if data.quality_state == "not_run":
        out += ["**Data-quality gate: not run** for this day; the figures have not been validated.", ""]
    else:
        quality = data.quality or {}
        out += [f"**Data-quality gate: {md(data.quality_state)}** (run {md(quality.get('run_id'))})."
                + (f" {md(quality['summary'])}" if quality.get("summary") else ""), ""]
    out += [f"- {md(spot)}" for spot in data.blind_spots] + ([""] if data.blind_spots else [])
    if data.fallback:
        rows = [[md(f["project"]),
                 f"{count(f['requests'])} ({'census' if f.get('is_census') else _logged(f)})",
                 share_with_interval(f["fallback_share"], f.get("fallback_share_ci_low"), f.get("fallback_share_ci_high")),
                 _with_interval(signed_money(f["fallback_extra_cost_usd"]), f.get("fallback_extra_cost_usd_ci"), f)]
                for f in data.fallback]
        out += _table(["Project", "Requests (logged)", "Fallback share", "Extra cost (scaled to all requests)"], rows,
                      [False, True, True, True])
        out += _image(chart.get("fallback_share.png"))
    if data.waste:
        out += ["Likely waste: " + "; ".join(f"{md(w['api_key_name'] or w['api_key_hash'])} ({md(w['project'])}) "
                                              f"{money(w['wasted_spend_usd'])} of {money(w['spend_usd'])}, "
                                              f"{waste_basis(w)}" for w in data.waste) + ".", ""]
    if data.unowned_keys:
        out += ["Spend nobody owns: " + ", ".join(f"{md(k['api_key'])} {money(k['spend_usd'])}"
                                                  for k in data.unowned_keys[:10]) + ".", ""]
    if data.unused_keys:
        out += ["Unused keys (enabled, idle): " + ", ".join(f"{md(k['api_key_name'])} ({md(k['project'])})"
                                                           for k in data.unused_keys) + ".", ""]
    out += ["## 6. Files", "", "- `digest.html` — this digest with charts, for reading and printing"]
    out += [f"- `{t.name}` — {t.description}" for t in tables]
    out += [f"- `charts/{c.name}`" for c in charts]
    out += ["", "The FOCUS 1.0 export of the day is in `focus/` beside `digests/`.", ""]
    return "\n".join(out)


def _logged(row: dict[str, Any]) -> str:
    coverage = row.get("coverage_share")
    share_text = "" if coverage is None else f", {coverage_text(coverage)}"
    return f"{count(row.get('logged_requests'))} logged{share_text}"


def _with_interval(shown: str, bounds: tuple | None, row: dict[str, Any] | None = None) -> str:
    if row is not None and row.get("fallback_share") == 0 and not row.get("is_census"):
        return f"{shown} (no fallback in the sample)"
    low, high = bounds or (None, None)
    if low is None or high is None or round(low, 2) == round(high, 2):
        return shown
    return f"{shown} (95% CI {money(low)}–{money(high)})"


def _image(chart: Chart | None) -> list[str]:
    if chart is None:
        return []
    return [f"![{md(chart.alt)}](charts/{chart.name})", ""]
