"""The alert ledger: evaluate the decision rules for a day and record every outcome before anything is sent.

Ledger first, delivery second (alerts.delivery). `evaluate_day` runs every rule (sql/rules), decides each outcome (fired,
suppressed by an annotation, blocked by a failed quality gate), keeps persisting conditions on one streak
(first_seen_date, escalation instead of repetition) and writes `marts.fct_alerts` plus the planned
per-channel deliveries in one transaction, before anything is sent. `emit_day` then delivers the pending
and previously failed deliveries of the day (JSONL file, Slack, email) and records each outcome; a rerun
sends what failed and never repeats what succeeded. docs/alerts.md has the rules and the message format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend.alerts import key_notices
from openrouter_spend.alerts.rules import (
    SEVERITIES,
    Route,
    annotation_explains,
    evaluate_rule,
)
from openrouter_spend.warehouse import connect, transaction

log = logging.getLogger(__name__)

FIRED, SUPPRESSED, BLOCKED = "fired", "suppressed", "blocked"
PENDING, SENT, FAILED, SKIPPED, CANCELLED = "pending", "sent", "failed", "skipped", "cancelled"
RETRYABLE = (PENDING, FAILED)
ALERT_COLUMNS = (
    "alert_id", "rule_id", "usage_date", "severity", "project", "budget_owner", "metric", "observed_value",
    "expected_value", "threshold_value", "impact_usd", "explanation", "status", "channels", "first_seen_date",
    "segment_key", "team", "api_key_hash", "api_key_name", "model", "provider_name", "workflow", "signal",
    "window_start", "window_end", "baseline_start", "baseline_end", "history_days", "base_severity",
    "occurrence", "days_active", "notified_severity", "is_notified", "annotation_ids", "quality_status",
    "route", "title", "message", "contributors", "facts", "run_id", "evaluated_at", "root_alert_id",
    "linked_alert_ids",
)
JSON_COLUMNS = ("contributors", "facts")


@dataclass(frozen=True)
class Quality:
    """The data-quality status of a day as the quality gate recorded it."""

    status: str  # passed | failed | unknown
    summary: str
    gate_installed: bool


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def alert_id_for(rule_id: str, segment_key: str, day: date) -> str:
    """Stable id of the alert of one rule, segment and day (so reruns update rather than duplicate)."""
    return "alt_" + hashlib.sha256(f"{rule_id}|{segment_key}|{day.isoformat()}".encode()).hexdigest()[:24]


def delivery_id_for(alert_id: str, channel: str, target: str) -> str:
    """Stable id of one alert's delivery to one channel target."""
    return "dlv_" + hashlib.sha256(f"{alert_id}|{channel}|{target}".encode()).hexdigest()[:24]


# ----- evaluation -----------------------------------------------------------------------------------------


def _table_exists(con, schema: str, table: str) -> bool:
    return con.execute("select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
                       [schema, table]).fetchone()[0] > 0


def quality_status(con, day: date) -> Quality:
    """The newest quality run of the day (marts.fct_quality_runs), 'unknown' without one or without the gate."""
    if not _table_exists(con, "marts", "fct_quality_runs"):
        return Quality("unknown", "no quality gate installed", False)
    row = con.execute(
        "select status, summary from marts.fct_quality_runs where usage_date = ? "
        "order by validated_at desc, run_id desc limit 1", [day]).fetchone()
    if row is None:
        return Quality("unknown", "the day has not been validated", True)
    return Quality(row[0], row[1], True)


def project_owners(con, day: date) -> dict[str, dict[str, str | None]]:
    """Each project's team, budget owner and owner contact under the configuration in force on `day`."""
    rows = con.execute(
        """
        select projects.project, projects.team, projects.budget_owner, projects.budget_owner_contact
        from config.projects as projects
        inner join config.config_versions as versions using (config_version_id)
        where ? >= versions.effective_from and (versions.effective_to is null or ? < versions.effective_to)
        """, [day, day]).fetchall()
    return {project: {"team": team, "budget_owner": owner, "contact": contact}
            for project, team, owner, contact in rows}


def _annotations(con, day: date) -> list[dict[str, Any]]:
    rows = con.execute(
        "select annotation_id, kind, start_date, end_date, project, signals, description, expected_change "
        "from marts.dim_annotation where ? between start_date and end_date order by annotation_id", [day]).fetchall()
    keys = ("annotation_id", "kind", "start_date", "end_date", "project", "signals", "description",
            "expected_change")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _previous(con, day: date, lookback_days: int) -> dict[tuple[str, str], dict[str, Any]]:
    rows = con.execute(
        """
        select rule_id, segment_key, usage_date, first_seen_date, notified_severity
        from marts.fct_alerts
        where usage_date between ? and ?
        qualify row_number() over (partition by rule_id, segment_key order by usage_date desc) = 1
        """, [day - timedelta(days=lookback_days), day - timedelta(days=1)]).fetchall()
    return {(rule_id, segment): {"usage_date": seen, "first_seen_date": first, "notified_severity": notified}
            for rule_id, segment, seen, first, notified in rows}


def _escalated(base: str, days_active: int, escalate_after_days: int | None) -> str:
    if not escalate_after_days:
        return base
    steps = (days_active - 1) // escalate_after_days
    return SEVERITIES[min(len(SEVERITIES) - 1, _rank(base) + steps)]


# Signals that move without a direction (a provider-mix shift): any covering annotation explains them.
_DIRECTIONLESS_SIGNALS = ("provider_mix",)


def _move_ratio(candidate: dict) -> float | None:
    """How far the candidate's signal moved: observed ÷ expected (None for a shift without direction)."""
    if candidate["signal"] in _DIRECTIONLESS_SIGNALS:
        return None
    observed, expected = candidate["observed_value"], candidate["expected_value"]
    if observed is None or expected is None:
        return None
    if expected <= 0:
        return math.inf if observed > 0 else 1.0
    return observed / expected


def _matching_annotations(candidate: dict, annotations: list[dict]) -> list[dict]:
    """Annotations covering the candidate's signal and project that announced this direction and size."""
    signal = candidate["signal"]
    if not signal:
        return []
    ratio = _move_ratio(candidate)
    return [note for note in annotations
            if signal in note["signals"] and note["project"] in (candidate["project"], "*")
            and annotation_explains(note.get("expected_change"), ratio)]


def _planned_deliveries(alert: dict, route: Route, contact: str | None, day: date) -> list[dict[str, str]]:
    """The day's file lists every condition open that day (marked new, escalated, ongoing...; a key listed in
    its owner's notice rides with that notice); Slack and e-mail carry only what is notified (new or
    escalated) at or above the route's severity."""
    if not alert["is_notified"] and (alert["occurrence"] == key_notices.RESOLVED
                                     or key_notices.is_listed_in_another_notice(alert)):
        return []
    targets = [("file", f"alerts/{day.isoformat()}.jsonl")]
    if alert["is_notified"] and _rank(alert["severity"]) >= _rank(route.min_severity):
        if route.has_slack:
            targets.append(("slack", f"slack:{route.name}"))
        recipients = route.email_recipients(contact)
        if recipients:
            targets.append(("email", "email:" + ",".join(recipients)))
    return [{"delivery_id": delivery_id_for(alert["alert_id"], channel, target), "alert_id": alert["alert_id"],
             "usage_date": day, "channel": channel, "route": route.name, "target": target}
            for channel, target in targets]


def _decide(candidate: dict, rule, previous: dict | None, day: date, quality: Quality,
            annotations: list[dict], owner: dict[str, str | None], route: Route) -> dict[str, Any]:
    """The ledger row for one candidate: outcome, streak, severity (its text is rendered once it is kept)."""
    persisting = previous is not None and (day - previous["usage_date"]).days <= rule.resolve_after_days
    first_seen = previous["first_seen_date"] if persisting else day
    days_active = (day - first_seen).days + 1
    base = candidate["severity"] or rule.severity
    notes = _matching_annotations(candidate, annotations)
    if quality.status == "failed" and candidate["rule_id"] != "data_quality":
        status, explanation = BLOCKED, f"blocked: the day failed the data-quality gate ({quality.summary})"
    elif notes:
        status = SUPPRESSED
        explanation = "; ".join(f"{n['annotation_id']} ({n['kind']}, {n['start_date']}..{n['end_date']}): "
                                f"{n['description']}" for n in notes)
    else:
        status, explanation = FIRED, None
    # An explained or blocked condition keeps its base severity: time alone does not make it more urgent.
    severity = _escalated(base, days_active, rule.escalate_after_days) if status == FIRED else base
    notified = previous["notified_severity"] if persisting else None
    if status == FIRED and notified is None:
        occurrence, notify = ("new" if days_active == 1 else "unexplained"), True
    elif status == FIRED and _rank(severity) > _rank(notified):
        occurrence, notify = "escalated", True
    else:
        occurrence, notify = ("new" if not persisting else "ongoing"), False
    if key_notices.is_resolution(candidate):
        occurrence, notify = key_notices.RESOLVED, False
    facts = json.loads(candidate["facts"]) if isinstance(candidate["facts"], str) else candidate["facts"]
    contributors = (json.loads(candidate["contributors"]) if isinstance(candidate["contributors"], str)
                    else candidate["contributors"])
    alert = {
        **{key: candidate[key] for key in (
            "rule_id", "segment_key", "project", "api_key_hash", "api_key_name", "model", "provider_name",
            "workflow", "signal", "metric", "observed_value", "expected_value", "threshold_value", "impact_usd",
            "window_start", "window_end", "baseline_start", "baseline_end", "history_days")},
        "alert_id": alert_id_for(candidate["rule_id"], candidate["segment_key"], day),
        "usage_date": day,
        "severity": severity,
        "base_severity": base,
        "budget_owner": owner.get("budget_owner"),
        "team": owner.get("team"),
        "explanation": explanation,
        "status": status,
        "first_seen_date": first_seen,
        "occurrence": occurrence,
        "days_active": days_active,
        "notified_severity": severity if notify else notified,
        "is_notified": notify,
        "annotation_ids": [n["annotation_id"] for n in notes],
        "quality_status": quality.status,
        "route": route.name,
        "contributors": contributors or [],
        "facts": facts or {},
    }
    return alert


# ----- correlation: one root alert per cause ---------------------------------------------------------------

# Rules whose alert can be the cause of others the same day, most specific first: a looping key explains its
# project's spend spike and budget breaches; a fallback surge explains the provider shift it routes traffic
# into; a project's spend spike explains its budget breaches and the account's spike.
_ROOT_PRECEDENCE = ("runaway_usage", "fallback_rate_rise", "credit_burn_spike", "budget_threshold")


def _excess_usd(root: dict) -> float | None:
    """The spend the root's cause added to its project's day (None when the rule does not measure one)."""
    if root["rule_id"] == "runaway_usage":
        return root["facts"].get("excess_spend_usd")
    if root["rule_id"] == "credit_burn_spike" and root["project"] != "*":
        return root["impact_usd"]
    return None


def _explains(root: dict, alert: dict) -> bool:
    """Whether the root's cause explains `alert`: without the root's excess spend, `alert` would not hold."""
    if root is alert or root["alert_id"] == alert["alert_id"]:
        return False
    rule, facts = alert["rule_id"], alert["facts"]
    if root["rule_id"] == "fallback_rate_rise":
        return rule == "provider_concentration" and alert["project"] == root["project"]
    if root["rule_id"] == "budget_threshold":
        # The project's spend of the day is one cause: its most severe budget alert carries the others.
        return rule == "budget_threshold" and alert["project"] == root["project"]
    excess = _excess_usd(root)
    if not excess or excess <= 0:
        return False
    same_project = alert["project"] == root["project"]
    if rule == "budget_threshold" and same_project:
        spend, budget, level = facts.get("spend_usd"), facts.get("effective_budget_usd"), facts.get("level")
        return None not in (spend, budget, level) and spend - excess < level * budget
    if rule == "credit_burn_spike" and (same_project or alert["project"] == "*"):
        return alert["observed_value"] - excess < alert["threshold_value"]
    if rule == "credit_runway_low":
        balance, burn = facts.get("balance_usd"), facts.get("burn_7d_avg_usd")
        if balance is None or not burn or burn - excess / 7 <= 0:
            return False
        return balance / (burn - excess / 7) >= alert["threshold_value"]
    return False


def _root_order(alert: dict) -> tuple:
    rule = alert["rule_id"]
    # Projects before the account: a project's spike is the cause of the account's, not the other way round.
    return (_ROOT_PRECEDENCE.index(rule) if rule in _ROOT_PRECEDENCE else len(_ROOT_PRECEDENCE),
            alert["project"] == "*", -_rank(alert["severity"]), -(alert["threshold_value"] or 0),
            -(alert["impact_usd"] or 0), alert["alert_id"])


def correlate(alerts: list[dict]) -> None:
    """Attach each fired alert that another fired alert's cause explains to that root (in place).

    Sets `root_alert_id` on an explained alert and `linked_alert_ids` on its root; a root is the most specific
    cause (_ROOT_PRECEDENCE), and an alert explained by a root never is one itself. The ledger keeps every
    row; the notification is the root's, sent when any alert of its group is news.
    """
    for alert in alerts:
        alert["root_alert_id"], alert["linked_alert_ids"] = None, []
    fired = sorted((a for a in alerts if a["status"] == FIRED), key=_root_order)
    roots: list[dict] = []
    for alert in fired:
        root = next((candidate for candidate in roots if _explains(candidate, alert)), None)
        if root is None:
            roots.append(alert)
        else:
            alert["root_alert_id"] = root["alert_id"]
            root["linked_alert_ids"].append(alert["alert_id"])


def _group_notification(root: dict, linked: list[dict]) -> None:
    """The root carries its group's news: sent when any member is, with the explained alerts in its text."""
    if not linked:
        return
    root["is_notified"] = root["is_notified"] or any(a["is_notified"] for a in linked)
    lines = [f"Explains {len(linked)} other alert(s) of this day (recorded in marts.fct_alerts, not sent "
             "separately):"]
    lines += [f"- {a['title']} ({a['occurrence']}; alert {a['alert_id']})" for a in linked]
    root["message"] += "\n\n" + "\n".join(lines)
    for alert in linked:
        alert["is_notified"] = False
        alert["message"] += (f"\n\nExplained by: {root['title']} (alert {root['alert_id']}); "
                             "sent with it.")


def evaluate_day(day: date, run_id: str, *, config_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate every enabled rule for `day` and record the outcomes and planned deliveries; {"to_send": n, ...}."""
    from openrouter_spend.alerts.render import render  # render reads this module's vocabulary
    from openrouter_spend.context import rules_config as parsed_rules

    rules_config = parsed_rules(config_dir)
    evaluated_at = datetime.now(UTC)
    with connect() as con:
        quality = quality_status(con, day)
        candidates: list[tuple[Any, dict]] = []
        evaluated = []
        for rule in rules_config.enabled_rules:
            if rule.rule_id == "data_quality" and not quality.gate_installed:
                continue
            evaluated.append(rule.rule_id)
            candidates += [(rule, row) for row in evaluate_rule(con, rule, day)]
        owners = project_owners(con, day)
        annotations = _annotations(con, day)
        lookback = max(rule.resolve_after_days for rule in rules_config.rules.values())
        previous = key_notices.with_open_conditions(con, day, _previous(con, day, lookback))
        alerts, deliveries, routing, wording = [], [], {}, {}
        for rule, candidate in candidates:
            owner = owners.get(candidate["project"], {})
            route = rules_config.route_for(rule.rule_id, owner.get("budget_owner"))
            alert = _decide(candidate, rule, previous.get((rule.rule_id, candidate["segment_key"])), day, quality,
                            annotations, owner, route)
            alert["run_id"], alert["evaluated_at"] = run_id, evaluated_at
            alerts.append(alert)
            routing[alert["alert_id"]] = (route, owner.get("contact"))
            wording[alert["alert_id"]] = (rule, owner)
        alerts = key_notices.state_changes_only(alerts)
        # Text only for the rows kept: an organisation's idle keys are candidates every day, rows only on a change.
        for alert in alerts:
            alert["title"], alert["message"] = render(alert, *wording[alert["alert_id"]], quality)
        correlate(alerts)
        by_id = {alert["alert_id"]: alert for alert in alerts}
        for alert in alerts:
            _group_notification(alert, [by_id[linked] for linked in alert["linked_alert_ids"]])
        key_notices.bundle_per_owner(alerts, _rank)
        for alert in alerts:
            route, contact = routing[alert["alert_id"]]
            # A root pages at the most severe level of the alerts it carries.
            severity = max([alert["severity"], *(by_id[i]["severity"] for i in alert["linked_alert_ids"])], key=_rank)
            planned = _planned_deliveries({**alert, "severity": severity}, route, contact, day)
            alert["channels"] = ["file" if d["channel"] == "file" else d["target"] for d in planned]
            deliveries += planned
        to_send = _record(con, day, run_id, evaluated_at, alerts, deliveries, quality, evaluated)
    counts = {status: sum(a["status"] == status for a in alerts) for status in (FIRED, SUPPRESSED, BLOCKED)}
    summary = {
        "day": day.isoformat(), "run_id": run_id, "quality_status": quality.status,
        "rules_evaluated": len(evaluated), "alerts": len(alerts), **counts,
        "notified": sum(a["is_notified"] for a in alerts), "to_send": to_send,
        "linked": sum(a["root_alert_id"] is not None for a in alerts),
        "by_rule": {rule_id: sum(a["rule_id"] == rule_id for a in alerts)
                    for rule_id in sorted({a["rule_id"] for a in alerts})},
    }
    log.info("alerts for %s: %s", day, summary)
    return summary


def _record(con, day: date, run_id: str, evaluated_at: datetime, alerts: list[dict], deliveries: list[dict],
            quality: Quality, evaluated: list[str]) -> int:
    """Replace the day's ledger rows and reconcile its planned deliveries in one transaction; returns to_send."""
    placeholders = ", ".join("cast(? as json)" if column in JSON_COLUMNS else "?" for column in ALERT_COLUMNS)
    with transaction(con):
        con.execute("delete from marts.fct_alerts where usage_date = ?", [day])
        if alerts:
            con.executemany(
                f"insert into marts.fct_alerts ({', '.join(ALERT_COLUMNS)}) values ({placeholders})",
                [[json.dumps(alert[c], default=str) if c in JSON_COLUMNS else alert[c] for c in ALERT_COLUMNS]
                 for alert in alerts])
        existing = dict(con.execute(
            "select delivery_id, status from marts.fct_alert_deliveries where usage_date = ?", [day]).fetchall())
        planned_ids = {d["delivery_id"] for d in deliveries}
        for delivery in deliveries:
            status = existing.get(delivery["delivery_id"])
            if status is None:
                con.execute(
                    "insert into marts.fct_alert_deliveries (delivery_id, alert_id, usage_date, channel, route, target, "
                    "status, attempts, planned_at, planned_run_id) values (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                    [delivery["delivery_id"], delivery["alert_id"], day, delivery["channel"], delivery["route"],
                     delivery["target"], evaluated_at, run_id])
            elif status == CANCELLED:
                con.execute("update marts.fct_alert_deliveries set status = 'pending', planned_at = ?, "
                            "planned_run_id = ? where delivery_id = ?", [evaluated_at, run_id, delivery["delivery_id"]])
        stale = [delivery_id for delivery_id, status in existing.items()
                 if delivery_id not in planned_ids and status in RETRYABLE]
        if stale:
            con.execute("update marts.fct_alert_deliveries set status = 'cancelled', "
                        "last_error = 'no longer planned: the alert changed on re-evaluation' "
                        "where list_contains(?, delivery_id)", [stale])
        to_send = con.execute(
            "select count(*) from marts.fct_alert_deliveries where usage_date = ? and status in ('pending', 'failed')",
            [day]).fetchone()[0]
        con.execute(
            "insert or replace into marts.fct_alert_runs (usage_date, run_id, evaluated_at, quality_status, "
            "quality_summary, rules_evaluated, alerts, fired, suppressed, blocked, notified, to_send) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [day, run_id, evaluated_at, quality.status, quality.summary, evaluated, len(alerts),
             sum(a["status"] == FIRED for a in alerts), sum(a["status"] == SUPPRESSED for a in alerts),
             sum(a["status"] == BLOCKED for a in alerts), sum(a["is_notified"] for a in alerts), to_send])
    return int(to_send)
