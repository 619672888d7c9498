"""The digest's findings and the sentences that explain them: what needs attention, why spend moved.

This module decides which findings a day has; their sentences are the blocks of
templates/digest/findings.txt.j2 (plain text: the HTML and Markdown digests escape them when they show them).
"""

from __future__ import annotations

from typing import Any

from openrouter_spend import rendering
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

SENTENCES = "digest/findings.txt.j2"


def _say(sentence: str, **context: Any) -> str:
    """One sentence of findings.txt.j2."""
    return rendering.render_blocks(SENTENCES, (sentence,), why=why, announcement=announcement,
                                   waste_basis=waste_basis, **context)[sentence]


def findings(data: DigestData) -> list[Finding]:
    """The short "what needs attention" list: runway, budgets, unexplained moves, premium drift, ownership."""
    findings: list[Finding] = []
    if data.quality_state == "failed":
        findings.append(Finding("critical", _say("quality_failed")))
    balance = data.balance
    if balance and balance.get("runway_days") is not None and balance["runway_days"] < RUNWAY_WARN_DAYS:
        severity = "critical" if balance["runway_days"] < RUNWAY_CRITICAL_DAYS else "warning"
        findings.append(Finding(severity, _say("top_up", balance=balance), "finance"))
    for row in data.budgets:
        owner = row.get("budget_owner")
        if row["status"] == "over":
            worst = max(("daily", "weekly", "monthly"),
                        key=lambda period: row.get(f"{period}_budget_used_ratio") or 0)
            spent = {"daily": row["spend_usd"], "weekly": row["week_to_date_spend_usd"],
                     "monthly": row["month_to_date_spend_usd"]}[worst]
            findings.append(Finding("warning", _say("over_budget", row=row, period=worst, spent=spent,
                                                    ratio=row[f"{worst}_budget_used_ratio"]), owner))
        elif row["status"] == "at_risk":
            findings.append(Finding("warning", _say("at_risk", row=row), owner))
    for change in data.changes:
        delta, prior = change.get("delta_usd"), change.get("prior_spend_usd")
        if change["project"] == ACCOUNT or delta is None or change["annotations"]:
            continue
        if delta >= UNEXPLAINED_MOVE_MIN_USD and delta >= UNEXPLAINED_MOVE_MIN_SHARE * (prior or 0):
            findings.append(Finding("warning", _say(
                "unexplained_rise", change=change, delta=delta, prior=prior,
                against=change.get("annotations_against") or [], causes=_alert_causes(data, change["project"])),
                change.get("budget_owner")))
        elif (change.get("annotations_against") and prior and -delta >= UNEXPLAINED_MOVE_MIN_USD
              and -delta >= UNEXPLAINED_MOVE_MIN_SHARE * prior):
            findings.append(Finding("warning", _say("fall_against_announcement", change=change, delta=delta,
                                                    prior=prior, note=change["annotations_against"][0]),
                                    change.get("budget_owner")))
    for row in data.premium:
        change = row.get("premium_spend_share_change")
        if (row["project"] == ACCOUNT or change is None or change < PREMIUM_SHARE_RISE or row["annotations"]
                or (row.get("spend_usd") or 0) < PREMIUM_MIN_SPEND_USD):
            continue
        findings.append(Finding("warning", _say("premium_drift", row=row, change=change,
                                                                   baseline=data.baseline_label), row.get("budget_owner")))
    findings += _alert_findings(data)
    # Without a baseline (a key's first days) the waste comes from logged retries and duplicates only.
    findings += [Finding("warning", _say("loop_key", waste=waste), None) for waste in data.waste]
    unowned = sum(key["spend_usd"] for key in data.unowned_keys)
    if unowned > 0:
        # Above the tolerated share (the unowned_spend alert fired), an ownership gap is a warning.
        gap = next((a for a in data.alerts if a.get("rule_id") == "unowned_spend" and a.get("status") == "fired"
                    and not a.get("api_key_name")), None)
        findings.append(Finding("warning" if gap else "info",
                                _say("assign_owners", unowned=unowned, keys=data.unowned_keys, gap=gap), "finance"))
    if data.unused_keys:
        findings.append(Finding("info", _say("unused_keys", keys=data.unused_keys,
                                             idle_days=_idle_days(data.unused_keys)), None))
    return findings


# Root alerts whose subject no mart-based finding states: a runaway key whose waste nothing measured, a
# fallback surge, a provider shift, a new unowned key. Budgets, spend moves, premium drift and runway have
# their own findings above.
ALERT_FINDING_RULES = ("runaway_usage", "fallback_rate_rise", "provider_concentration", "unowned_spend")


def _root_alerts(data: DigestData, project: str | None = None) -> list[dict[str, Any]]:
    return [alert for alert in data.alerts
            if alert.get("status") == "fired" and not alert.get("root_alert_id")
            and alert.get("rule_id") in ALERT_FINDING_RULES and (project is None or alert.get("project") == project)]


def _alert_causes(data: DigestData, project: str) -> list[str]:
    """The alerts that name a cause of a project's move: "runaway_usage (key …)"."""
    return [_say("cause", alert=alert) for alert in _root_alerts(data, project) if alert["rule_id"] != "unowned_spend"]


def _alert_findings(data: DigestData) -> list[Finding]:
    wasted_keys = {row["api_key_hash"] for row in data.waste}
    findings = []
    for alert in _root_alerts(data):
        if alert["rule_id"] == "unowned_spend" and not alert.get("api_key_name"):
            continue  # the unowned share has its "Assign owners" finding
        if alert["rule_id"] == "runaway_usage" and alert.get("api_key_hash") in wasted_keys:
            continue  # its measured waste has a finding of its own
        title = (alert.get("title") or alert["rule_id"]).split("] ", 1)[-1]
        severity = alert.get("severity") if alert.get("severity") in ("critical", "warning") else "info"
        findings.append(Finding(severity, _say("alert", title=title, linked=len(alert.get("linked_alert_ids") or [])),
                                alert.get("budget_owner")))
    return findings


def _idle_days(keys: list[dict[str, Any]]) -> str:
    return str(min(int(key.get("unused_after_days") or 30) for key in keys))


def correlation_text(alert: dict[str, Any], alerts: list[dict[str, Any]]) -> str:
    """How an alert relates to the others of the day: caused by a root (sent with it), or the root of some."""
    root_id, linked = alert.get("root_alert_id"), alert.get("linked_alert_ids") or []
    if root_id:
        return _say("caused_by", root_id=root_id, root=next((a for a in alerts if a.get("alert_id") == root_id), None))
    if linked:
        return _say("root_cause", linked=len(linked))
    return ""


def announcement(note: dict[str, Any]) -> str:
    """What an annotation announced for its signal, in words: "a rise", "about ×2.0", "about ×0.5"."""
    return _say("announcement", expected=note.get("expected_change"))


def waste_basis(row: dict[str, Any]) -> str:
    """Where a key's waste figure comes from: its coverage and 95% interval when it is a request-log sample."""
    return _say("waste_basis", method=row.get("waste_method"), low=row.get("wasted_spend_ci_low_usd"),
                high=row.get("wasted_spend_ci_high_usd"), logged=row.get("per_request_requests") or 0,
                coverage=row.get("per_request_coverage_share") or 0.0)


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
        parts.append(_say("effect", words=EFFECT_WORDS[name][0 if value > 0 else 1], value=value))
    return _say("why", parts=parts)
