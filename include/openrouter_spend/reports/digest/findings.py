"""The digest's findings and the sentences that explain them: what needs attention, why spend moved."""

from __future__ import annotations

from typing import Any

from openrouter_spend.reports.digest.data import (
    ACCOUNT,
    PREMIUM_MIN_SPEND_USD,
    PREMIUM_SHARE_RISE,
    RUNWAY_CRITICAL_DAYS,
    RUNWAY_WARN_DAYS,
    UNEXPLAINED_MOVE_MIN_SHARE,
    UNEXPLAINED_MOVE_MIN_USD,
    DigestData,
    Finding,
)
from openrouter_spend.reports.digest.formatting import coverage as coverage_text
from openrouter_spend.reports.digest.formatting import short_day, signed_share


def findings(data: DigestData) -> list[Finding]:
    """The short "what needs attention" list: runway, budgets, unexplained moves, premium drift, ownership."""
    findings: list[Finding] = []
    if data.quality_state == "failed":
        findings.append(Finding("critical", "The data-quality gate failed for this day: treat every figure below "
                                            "as provisional until the data is fixed."))
    balance = data.balance
    if balance and balance.get("runway_days") is not None and balance["runway_days"] < RUNWAY_WARN_DAYS:
        severity = "critical" if balance["runway_days"] < RUNWAY_CRITICAL_DAYS else "warning"
        findings.append(Finding(severity, (
            f"Top up credits: the balance of ${balance['balance_usd']:,.2f} lasts {balance['runway_days']:.1f} days "
            f"at the 7-day burn of ${balance['burn_7d_avg_usd']:,.2f}/day (runs out around "
            f"{short_day(balance['projected_depletion_date'])})."), "finance"))
    for row in data.budgets:
        owner = row.get("budget_owner")
        if row["status"] == "over":
            worst = max(("daily", "weekly", "monthly"),
                        key=lambda period: row.get(f"{period}_budget_used_ratio") or 0)
            ratio = row[f"{worst}_budget_used_ratio"]
            spent = {"daily": row["spend_usd"], "weekly": row["week_to_date_spend_usd"],
                     "monthly": row["month_to_date_spend_usd"]}[worst]
            findings.append(Finding("warning", (
                f"{row['project']} is over its {worst} budget: ${spent:,.2f} of "
                f"${row[f'effective_{worst}_budget_usd']:,.2f} ({ratio:.0%})."), owner))
        elif row["status"] == "at_risk":
            findings.append(Finding("warning", (
                f"{row['project']} is on course to exceed its monthly budget: forecast "
                f"${row['forecast_month_end_spend_usd']:,.2f} of ${row['effective_monthly_budget_usd']:,.2f} "
                f"({row['forecast_monthly_budget_ratio']:.0%})."), owner))
    for change in data.changes:
        delta, prior = change.get("delta_usd"), change.get("prior_spend_usd")
        if change["project"] == ACCOUNT or delta is None or change["annotations"]:
            continue
        if delta >= UNEXPLAINED_MOVE_MIN_USD and delta >= UNEXPLAINED_MOVE_MIN_SHARE * (prior or 0):
            against = change.get("annotations_against") or []
            reason = (f"more than {against[0]['annotation_id']} announced" if against
                      else "with no release or incident to explain it")
            findings.append(Finding("warning", (
                f"{change['project']} spent ${delta:,.2f} more than the day before "
                f"({delta / prior:+.0%}) {reason}; {why(change)}{_alert_causes(data, change['project'])}."
                if prior else f"{change['project']} spent ${delta:,.2f} with no spend the day before."),
                change.get("budget_owner")))
        elif (change.get("annotations_against") and prior and -delta >= UNEXPLAINED_MOVE_MIN_USD
              and -delta >= UNEXPLAINED_MOVE_MIN_SHARE * prior):
            note = change["annotations_against"][0]
            findings.append(Finding("warning", (
                f"{change['project']} spent ${-delta:,.2f} less than the day before ({signed_share(delta / prior)}) "
                "although "
                f"{note['annotation_id']} announced {announcement(note)}; {why(change)}."), change.get("budget_owner")))
    for row in data.premium:
        change = row.get("premium_spend_share_change")
        if (row["project"] == ACCOUNT or change is None or change < PREMIUM_SHARE_RISE or row["annotations"]
                or (row.get("spend_usd") or 0) < PREMIUM_MIN_SPEND_USD):
            continue
        findings.append(Finding("warning", (
            f"{row['project']}: premium models took {row['premium_spend_share']:.0%} of its spend against "
            f"{row['premium_spend_share_baseline_28d']:.0%} over the previous 28 days (+{change * 100:.0f} points), "
            "with no release explaining it."), row.get("budget_owner")))
    findings += _alert_findings(data)
    for waste in data.waste:
        # Without a baseline (a key's first days) the waste comes from logged retries and duplicates only.
        volume = (f"{waste['request_ratio']:.1f}× its usual requests" if waste.get("request_ratio") is not None
                  else "retries and duplicate requests in its own request log")
        findings.append(Finding("warning", (
            f"Key {waste['api_key_name'] or waste['api_key_hash']} ({waste['project']}) looks like a loop or "
            f"duplicate job: {volume}, {waste_text(waste)} of the day's ${waste['spend_usd']:,.2f} wasted."), None))
    unowned = sum(key["spend_usd"] for key in data.unowned_keys)
    if unowned > 0:
        # Above the tolerated share (the unowned_spend alert fired), an ownership gap is a warning.
        gap = next((a for a in data.alerts if a.get("rule_id") == "unowned_spend" and a.get("status") == "fired"
                    and not a.get("api_key_name")), None)
        share = (f"; unowned keys spent {gap['observed_value']:.1%} of the account over "
                 f"{(gap['window_end'] - gap['window_start']).days + 1} days, above the "
                 f"{gap['threshold_value']:.0%} tolerated" if gap else "")
        findings.append(Finding("warning" if gap else "info", (
            f"Assign owners: ${unowned:,.2f} came from {len(data.unowned_keys)} key(s) no project owns "
            f"({', '.join(key['api_key'] for key in data.unowned_keys[:3])}"
            f"{', …' if len(data.unowned_keys) > 3 else ''}){share}."), "finance"))
    if data.unused_keys:
        names = ", ".join(key["api_key_name"] or "?" for key in data.unused_keys[:4])
        findings.append(Finding("info", (
            f"{len(data.unused_keys)} enabled key(s) have been idle for {_idle_days(data.unused_keys)} days or "
            f"more and could be disabled: {names}{', …' if len(data.unused_keys) > 4 else ''}."), None))
    return findings


# Root alerts whose subject no mart-based finding states: a runaway key whose waste nothing measured, a
# fallback surge, a provider shift, a new unowned key. Budgets, spend moves, premium drift and runway have
# their own findings above.
ALERT_FINDING_RULES = ("runaway_usage", "fallback_rate_rise", "provider_concentration", "unowned_spend")


def _root_alerts(data: DigestData, project: str | None = None) -> list[dict[str, Any]]:
    return [alert for alert in data.alerts
            if alert.get("status") == "fired" and not alert.get("root_alert_id")
            and alert.get("rule_id") in ALERT_FINDING_RULES and (project is None or alert.get("project") == project)]


def _alert_causes(data: DigestData, project: str) -> str:
    """", see the runaway_usage alert (key …)": the alerts that name a cause of a project's move."""
    causes = [f"{alert['rule_id']}" + (f" (key {alert['api_key_name']})" if alert.get("api_key_name") else "")
              for alert in _root_alerts(data, project) if alert["rule_id"] != "unowned_spend"]
    return f"; see the {' and '.join(causes)} alert" if causes else ""


def _alert_findings(data: DigestData) -> list[Finding]:
    wasted_keys = {row["api_key_hash"] for row in data.waste}
    findings = []
    for alert in _root_alerts(data):
        if alert["rule_id"] == "unowned_spend" and not alert.get("api_key_name"):
            continue  # the unowned share has its "Assign owners" finding
        if alert["rule_id"] == "runaway_usage" and alert.get("api_key_hash") in wasted_keys:
            continue  # its measured waste has a finding of its own
        title = (alert.get("title") or alert["rule_id"]).split("] ", 1)[-1]
        linked = len(alert.get("linked_alert_ids") or [])
        severity = alert.get("severity") if alert.get("severity") in ("critical", "warning") else "info"
        explains = f"; it also explains {linked} other alert(s) of the day" if linked else ""
        findings.append(Finding(severity, f"{title} (alert{explains}).", alert.get("budget_owner")))
    return findings


def _idle_days(keys: list[dict[str, Any]]) -> str:
    return str(min(int(key.get("unused_after_days") or 30) for key in keys))


def correlation_text(alert: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
    """How an alert relates to the others of the day: caused by a root (sent with it), or the root of some."""
    root_id, linked = alert.get("root_alert_id"), alert.get("linked_alert_ids") or []
    if root_id:
        root = next((a for a in alerts if a.get("alert_id") == root_id), None)
        cause = f"{root['rule_id']} ({root['project']})" if root else root_id
        return f"caused by {cause}; sent with it"
    if linked:
        return f"root cause of {len(linked)} other alert(s) of the day"
    return ""


def announcement(note: dict[str, Any]) -> str:
    """What an annotation announced for its signal, in words: "a rise", "about ×2.0", "about ×0.5"."""
    expected = note.get("expected_change")
    return "a rise" if expected is None else f"about ×{expected:g}"


def waste_basis(row: dict[str, Any]) -> str:
    """Where a key's waste figure comes from: its coverage and 95% interval when it is a request-log sample."""
    low, high = row.get("wasted_spend_ci_low_usd"), row.get("wasted_spend_ci_high_usd")
    if row.get("waste_method") != "per_request" or low is None or high is None:
        return "estimated from daily totals"
    if round(low, 2) == round(high, 2):
        return "every request logged"
    logged, coverage = row.get("per_request_requests") or 0, row.get("per_request_coverage_share") or 0.0
    return (f"95% CI ${low:,.2f}–${high:,.2f}; from {logged:,} logged requests, {coverage_text(coverage)} of "
            "its traffic")


def waste_text(row: dict[str, Any]) -> str:
    """A key's waste figure and where it comes from."""
    return f"${row['wasted_spend_usd']:,.2f} ({waste_basis(row)})"


EFFECT_WORDS = {
    "volume_effect_usd": ("more requests", "fewer requests"),
    "project_mix_effect_usd": ("traffic shifting to costlier projects", "traffic shifting to cheaper projects"),
    "context_effect_usd": ("longer prompts per request", "shorter prompts per request"),
    "mix_price_effect_usd": ("pricier models or providers", "cheaper models or providers"),
    "waste_effect_usd": ("more wasted spend on loops and duplicates", "less wasted spend"),
}


def why(change: dict[str, Any], prefix: str = "") -> str:
    """The decomposition in words: the largest effect first, then the next one when it matters."""
    effects = [(name, change.get(f"{prefix}{name}")) for name in EFFECT_WORDS]
    effects = sorted(((name, value) for name, value in effects if value), key=lambda item: -abs(item[1]))
    if not effects:
        return "no change to explain"
    parts = []
    total = sum(abs(value) for _, value in effects)
    for name, value in effects[:2]:
        if parts and abs(value) < 0.2 * total:
            break
        words = EFFECT_WORDS[name][0 if value > 0 else 1]
        parts.append(f"{words} ({'+' if value > 0 else '−'}${abs(value):,.2f})")
    return "mostly " + " and ".join(parts) if len(parts) == 1 else "mostly " + ", then ".join(parts)
