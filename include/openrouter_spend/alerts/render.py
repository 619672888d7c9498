"""Alert messages: the title and text of an alert, and the Slack and email content of a route's alerts."""

from __future__ import annotations

from datetime import date
from typing import Any

from openrouter_spend.alerts import key_notices
from openrouter_spend.alerts.ledger import BLOCKED, SUPPRESSED, Quality
from openrouter_spend.alerts.rules import (
    Route,
)
from openrouter_spend.escaping import mail_header, slack, sql_literal


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"-${abs(value):,.2f}" if value < 0 else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}×"


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _contributors(items: list[dict]) -> str:
    parts = []
    for item in items:
        label = f"{item.get('dimension', '')} {item.get('name')}".strip()
        details = []
        if item.get("impact_usd") is not None:
            details.append(f"{'+' if item['impact_usd'] >= 0 else ''}{_usd(item['impact_usd'])}")
        if item.get("spend_usd") is not None:
            details.append(f"{_usd(item['spend_usd'])} spent")
        if item.get("share") is not None and item.get("usual_share") is not None:
            details.append(f"{_pct(item['share'])} of spend, usually {_pct(item['usual_share'])}")
        if item.get("requests") is not None:
            details.append(f"{_number(item['requests'])} requests")
        if item.get("is_new_key"):
            details.append("new key")
        parts.append(f"{label} ({', '.join(details)})" if details else label)
    return "; ".join(parts) if parts else "none"


def _segment(alert: dict) -> str:
    project = alert["project"]
    if alert.get("api_key_name") or alert.get("api_key_hash"):
        name = alert.get("api_key_name") or alert["api_key_hash"][:12]
        return f"key {name} ({project})"
    if project == "*":
        return "the account"
    return f"project {project}"


def _what(alert: dict) -> tuple[str, list[str]]:
    """Rule-specific headline and lines: what changed, against what, by how much."""
    rule, facts, day = alert["rule_id"], alert["facts"], alert["usage_date"]
    observed, expected, impact = alert["observed_value"], alert["expected_value"], alert["impact_usd"]
    segment = _segment(alert)
    if rule == "credit_runway_low":
        return (f"Credit runway {observed:.1f} days (below {alert['threshold_value']:g}) on {day}", [
            f"Balance {_usd(facts.get('balance_usd'))} at a trailing 7-day burn of {_usd(facts.get('burn_7d_avg_usd'))}"
            f"/day: credits run out around {facts.get('projected_depletion_date')}.",
            f"Top up at least {_usd(impact)} to restore {alert['threshold_value']:g} days of runway.",
        ])
    if rule == "credit_burn_spike":
        lines = [
            f"Spend {_usd(observed)} (net of waste) vs {_usd(expected)} expected from its keys' usual days "
            f"({_times(facts.get('ratio'))}; threshold {_usd(alert['threshold_value'])}).",
            f"Driven by usage: requests {_times(facts.get('request_ratio'))} usual, tokens per request "
            f"{_times(facts.get('tokens_per_request_ratio'))} ({'+' if facts.get('usage_effect_usd', 0) >= 0 else ''}"
            f"{_usd(facts.get('usage_effect_usd'))}); mix/price {_usd(facts.get('mix_price_usd'))}; "
            f"{facts.get('keys_rising')} of {facts.get('keys_compared')} keys rose.",
        ]
        if facts.get("waste_usd"):
            lines.append(f"Another {_usd(facts['waste_usd'])} looks wasted (loops, duplicates): see runaway_usage.")
        if facts.get("new_key_spend_usd"):
            lines.append(f"New keys spent {_usd(facts['new_key_spend_usd'])}.")
        if facts.get("explained_projects_left_out"):
            lines.append("Left out as explained by annotations: " + ", ".join(facts["explained_projects_left_out"]) + ".")
        return f"Spend spike: {segment} {_times(facts.get('ratio'))} usual ({'+' if impact >= 0 else ''}{_usd(impact)}) on {day}", lines
    if rule == "premium_share_rise":
        return (f"Premium share up: {segment} {_pct(observed)} of spend on premium models on {day}", [
            f"Premium share {_pct(observed)} vs {_pct(expected)} expected from its keys' usual mix "
            f"(+{100 * (observed - expected):.1f} pp; threshold {_pct(alert['threshold_value'])}).",
            f"Premium spend {_usd(facts.get('premium_spend_usd'))} vs {_usd(facts.get('expected_premium_spend_usd'))} "
            f"expected: {_usd(impact)} more on premium models.",
        ])
    if rule == "provider_concentration":
        return (f"Provider mix shift: {segment} moved {_pct(observed)} of spend to other providers on {day}", [
            f"{_usd(impact)} of {_usd(facts.get('spend_usd'))} was served by other providers than usual for the "
            f"same keys and models (threshold {_pct(alert['threshold_value'])}).",
            f"Top provider now {facts.get('top_provider')} ({_pct(facts.get('top_provider_share'))}); usually "
            f"{facts.get('usual_top_provider')} ({_pct(facts.get('usual_top_provider_share'))}). Concentration "
            f"(HHI) {facts.get('hhi')} vs {facts.get('usual_hhi')}.",
        ])
    if rule == "fallback_rate_rise":
        return (f"Fallback rate up: {segment} {_pct(observed)} of requests fell back on {day}", [
            f"{_number(facts.get('fallback_requests'))} of {_number(facts.get('requests'))} requests needed a "
            f"fallback vs {_pct(expected)} usually (threshold {_pct(alert['threshold_value'])}).",
            f"Fallback extra cost {_usd(facts.get('fallback_extra_cost_usd'))}; {_usd(impact)} above the usual rate.",
        ])
    if rule == "budget_threshold":
        period = facts.get("period")
        label = {"daily": "daily budget", "weekly": f"week-to-date budget (week of {facts.get('period_start')})",
                 "monthly": f"month-to-date budget ({facts.get('period_start')})"}.get(period, period)
        lines = [
            f"Spend {_usd(facts.get('spend_usd'))} = {_pct(observed)} of the {label} of "
            f"{_usd(facts.get('effective_budget_usd'))} (level {_pct(alert['threshold_value'])} crossed).",
        ]
        if facts.get("budget_multiplier") and facts["budget_multiplier"] != 1:
            lines.append(f"The budget includes a launch window: configured {_usd(facts.get('budget_usd'))} × "
                         f"{facts['budget_multiplier']:g}.")
        if period == "monthly" and facts.get("forecast_month_end_usd") is not None:
            lines.append(f"Month-end forecast at the usual pace: {_usd(facts['forecast_month_end_usd'])}.")
        if impact:
            lines.append(f"Over budget by {_usd(impact)}.")
        return f"Budget {_pct(alert['threshold_value'])} reached: {segment}, {label} on {day}", lines
    if rule == "unowned_spend" and facts.get("finding") == "new_key":
        return (f"New unowned key: {alert.get('api_key_name') or alert.get('api_key_hash')} spent {_usd(observed)} "
                f"on {day}", [
            f"The key (workspace {facts.get('workspace')}, created {facts.get('created_date')}) spent "
            f"{_usd(observed)} on {_number(facts.get('requests'))} requests, its first spend in "
            f"{facts.get('lookback_days')} days, and no project owns it.",
            "Assign the key to a project in owners.yaml or revoke it.",
        ])
    if rule == "unowned_spend":
        return (f"Unowned spend {_pct(observed)} of the account over {facts.get('window_days')} days to {day}", [
            f"{_usd(facts.get('unowned_spend_usd'))} of {_usd(facts.get('account_spend_usd'))} came from "
            f"{facts.get('unowned_keys')} keys no project owns (tolerated up to {_pct(expected)}); "
            f"{_usd(facts.get('unowned_spend_today_usd'))} on {day}.",
            "Assign the keys to a project in owners.yaml or revoke them.",
        ])
    if rule == "runaway_usage":
        if facts.get("results_measure") == "accepted_results":
            results = (f"Results stayed flat: accepted results {_times(facts.get('results_ratio'))} usual, so the "
                       "extra requests look like a loop, a retry storm or a duplicated job.")
        else:
            results = (f"No accepted-result signal for this key ({_number(facts.get('verdicts'))} verdicts); on its "
                       f"usual models ({_pct(facts.get('usual_model_share'))} of requests) a "
                       f"{_times(facts.get('request_ratio'))} multiple in a day looks like a loop, a retry storm or a "
                       f"duplicated job. Output tokens ran {_times(facts.get('output_ratio'))} usual.")
        cost = {"measured_waste": f"{_usd(impact)} of the day's spend was measured as waste "
                                  f"({(facts.get('waste_method') or 'per_request').replace('_', ' ')}).",
                "beyond_results": f"About {_usd(impact)} was spent beyond what the day's results usually cost.",
                "beyond_usual": f"About {_usd(impact)} was spent beyond the key's usual day."}
        return (f"Runaway usage: {segment} ran {_times(facts.get('request_ratio'))} its usual requests on {day}", [
            f"Requests {_number(facts.get('requests'))} vs {_number(facts.get('norm_requests'))} usual; spend "
            f"{_usd(facts.get('spend_usd'))} vs {_usd(facts.get('norm_spend_usd'))} usual.",
            results,
            cost.get(facts.get("impact_basis"), cost["beyond_results"]),
        ])
    if rule == "unused_key" and facts.get("state") == key_notices.RESOLVED:
        return (f"Key no longer unused: {segment} ({facts.get('reason')}) on {day}", [
            f"The key left the unused condition first seen {alert['first_seen_date']}: {facts.get('reason')}.",
        ])
    if rule == "unused_key":
        since = ("never used since its creation on " + str(facts.get("created_date"))) if facts.get("never_used") \
            else f"last used {facts.get('last_use_date')}"
        limit = (f"its limit allows {_usd(facts['limit_usd'])} of spend" if facts.get("limit_usd") is not None
                 else "it has no spending limit")
        return (f"Unused key: {segment} idle {observed:.0f} days", [
            f"The key is enabled but {since} (unused after {alert['threshold_value']:g} days); {limit}.",
            "Disable it or give it an expiry if nobody needs it.",
        ])
    if rule == "data_quality":
        return (f"Data quality failed for {day}: {observed:.0f} expectation(s)", [
            f"{facts.get('summary')}",
            f"Decision alerts for {day} are recorded as blocked until the data passes (quality run "
            f"{facts.get('run_id')}).",
        ])
    return f"{rule}: {segment} on {day}", [f"{alert['metric']} = {observed} (expected {expected})"]


# Values are pasted as SQL literals (escaping.sql_literal): a project named "x'; drop table ...; --" stays a string.
_REPRODUCE = {
    "credit_runway_low": "select * from marts.fct_credit_balance where as_of_date = {day}",
    "credit_burn_spike": "select * from marts.rpt_spend_change where usage_date = {day} and project = {project}",
    "premium_share_rise": "select * from marts.rpt_unit_economics_daily where usage_date = {day} and project = {project}",
    "provider_concentration": "select * from marts.fct_provider_mix_daily where usage_date = {day} and project = {project}",
    "fallback_rate_rise": "select * from marts.fct_fallback_daily where usage_date = {day} and project = {project}",
    "budget_threshold": "select * from marts.rpt_budget_status_daily where usage_date = {day} and project = {project}",
    "unowned_spend": "select * from marts.fct_daily_spend where not is_owned and usage_date > date {day} - 7",
    "runaway_usage": "select * from marts.rpt_key_usage_daily where usage_date = {day} and api_key_hash = {key}",
    "unused_key": "select * from marts.dim_api_key where api_key_hash = {key}",
    "data_quality": "select * from marts.fct_quality_results where usage_date = {day} and not success",
}


def render(alert: dict, rule, owner: dict[str, str | None], quality: Quality) -> tuple[str, str]:
    """Title and plain-text body of an alert: enough to act on without opening the warehouse."""
    headline, lines = _what(alert)
    prefix = {"escalated": "ESCALATED: ", "unexplained": "NOW UNEXPLAINED: "}.get(alert["occurrence"], "")
    title = f"[{alert['severity'].upper()}] {prefix}{headline}"
    window = (f"{alert['window_start']}" if alert["window_start"] == alert["window_end"]
              else f"{alert['window_start']} to {alert['window_end']}")
    if alert.get("baseline_start"):
        window += f" (baseline {alert['baseline_start']} to {alert['baseline_end']}, {alert['history_days']} days loaded)"
    owner_line = (f"{owner['budget_owner']} ({owner.get('team')}, {owner.get('contact')})" if owner.get("budget_owner")
                  else "no budget owner: routed to the default route")
    if alert["status"] == SUPPRESSED:
        explanation = f"explained, not paged: {alert['explanation']}"
    elif alert["status"] == BLOCKED:
        explanation = alert["explanation"]
    elif alert["signal"]:
        explanation = f"none: no release, incident or launch on the calendar covers {alert['signal']} here"
    else:
        explanation = "n/a for this rule"
    streak = (f"first seen {alert['first_seen_date']} (day {alert['days_active']}); {alert['occurrence']}; "
              f"rule {alert['rule_id']}, base severity {alert['base_severity']}")
    reproduce = _REPRODUCE.get(alert["rule_id"], "").format(
        day=sql_literal(str(alert["usage_date"])), project=sql_literal(alert["project"]),
        key=sql_literal(alert.get("api_key_hash") or ""))
    body = [title, "", *lines, "",
            f"Segment: {_segment(alert)}" + (f", model {alert['model']}" if alert.get("model") else "")
            + (f", workflow {alert['workflow']}" if alert.get("workflow") else ""),
            f"Window: {window}",
            f"Observed {alert['metric']}: {_number(alert['observed_value'])}; expected {_number(alert['expected_value'])}; "
            f"threshold {_number(alert['threshold_value'])}; impact {_usd(alert['impact_usd'])}",
            f"Top contributors: {_contributors(alert['contributors'])}",
            f"Budget owner: {owner_line}",
            f"Explanation: {explanation}",
            f"Data quality: {quality.status} ({quality.summary})",
            f"Status: {alert['status']}, {streak}"]
    if reproduce:
        body.append(f"Reproduce: {reproduce}")
    return title, "\n".join(body)


def slack_payload(route: Route, day: date, rows: list[dict]) -> dict[str, Any]:
    """An incoming-webhook payload: a header, one section per alert, a context line; every name Slack-escaped."""
    critical = sum(r["severity"] == "critical" for r in rows)
    text = f"openrouter-spend: {len(rows)} alert(s) for {day}" + (f", {critical} critical" if critical else "")
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": text[:150]}}]
    for row in rows:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_text(row)[:2900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                   f"route `{slack(route.name)}` · alert ids {', '.join(r['alert_id'] for r in rows)}"}]})
    return {"text": text, "blocks": blocks}


def _slack_text(row: dict) -> str:
    """The alert's plain-text message as mrkdwn: the title in bold, the text escaped (`<!channel>` stays text)."""
    lines = slack(row["message"]).split("\n")
    title, rest = lines[0], [line for line in lines[1:] if line.strip()]
    return f"*{title}*\n" + "\n".join(rest)


def email_content(route: Route, day: date, rows: list[dict]) -> tuple[str, str]:
    """Subject and body of the email carrying a route's alerts of the day."""
    critical = sum(r["severity"] == "critical" for r in rows)
    owners = sorted({mail_header(r["budget_owner"]) for r in rows if r["budget_owner"]})
    subject = (f"[openrouter-spend] {len(rows)} alert(s) for {day}" + (f" ({critical} critical)" if critical else "")
               + (f": {', '.join(owners)}" if owners else ""))
    sections = [f"{len(rows)} alert(s) from openrouter-spend for {day} (route {route.name}).", ""]
    for index, row in enumerate(rows, 1):
        sections += [f"--- {index}/{len(rows)} · {row['alert_id']} ---", row["message"], ""]
    sections.append("Suppressed and ongoing alerts are in marts.fct_alerts and the daily digest; this email "
                    "carries only new and escalated ones.")
    return subject, "\n".join(sections)
