"""The alert ledger and its delivery: evaluate the decision rules for a day, then send what needs sending.

Ledger first, delivery second. `evaluate_day` runs every rule (sql/rules), decides each outcome (fired,
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
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend import key_notices, settings
from openrouter_spend.escaping import mail_header, slack, sql_literal
from openrouter_spend.rules import (
    BUDGET_OWNER_TOKEN,
    SEVERITIES,
    Route,
    RulesConfig,
    annotation_explains,
    evaluate_rule,
    load_rules,
)
from openrouter_spend.warehouse import connect, migrate

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
_JSON_COLUMNS = ("contributors", "facts")


class AlertDeliveryFailed(Exception):
    """Some deliveries failed; they are recorded as failed and the next run (or retry) sends them."""


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


def _owners(con, day: date) -> dict[str, dict[str, str | None]]:
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


def _recipients(route: Route, contact: str | None) -> list[str]:
    recipients = []
    for entry in route.email_to:
        address = contact if entry == BUDGET_OWNER_TOKEN else entry
        if address and address not in recipients:
            recipients.append(address)
    return sorted(recipients)


def _planned_deliveries(alert: dict, route: Route, contact: str | None, day: date) -> list[dict[str, str]]:
    targets = [("file", f"alerts/{day.isoformat()}.jsonl")]
    if _rank(alert["severity"]) >= _rank(route.min_severity):
        if route.has_slack:
            targets.append(("slack", f"slack:{route.name}"))
        recipients = _recipients(route, contact)
        if recipients:
            targets.append(("email", "email:" + ",".join(recipients)))
    return [{"delivery_id": delivery_id_for(alert["alert_id"], channel, target), "alert_id": alert["alert_id"],
             "usage_date": day, "channel": channel, "route": route.name, "target": target}
            for channel, target in targets]


def _decide(candidate: dict, rule, previous: dict | None, day: date, quality: Quality,
            annotations: list[dict], owner: dict[str, str | None], route: Route) -> dict[str, Any]:
    """The ledger row for one candidate: outcome, streak, severity, text."""
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
    alert["title"], alert["message"] = render(alert, rule, owner, quality)
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
    from openrouter_spend.config import load_config

    owners_config = load_config(config_dir)
    rules_config = load_rules(config_dir, budget_owners={p.budget_owner for p in owners_config.projects})
    evaluated_at = datetime.now(UTC)
    with connect() as con:
        migrate(con)
        quality = quality_status(con, day)
        candidates: list[tuple[Any, dict]] = []
        evaluated = []
        for rule in rules_config.enabled_rules:
            if rule.rule_id == "data_quality" and not quality.gate_installed:
                continue
            evaluated.append(rule.rule_id)
            candidates += [(rule, row) for row in evaluate_rule(con, rule, day)]
        owners = _owners(con, day)
        annotations = _annotations(con, day)
        lookback = max(rule.resolve_after_days for rule in rules_config.rules.values())
        previous = key_notices.with_open_conditions(con, day, _previous(con, day, lookback))
        alerts, deliveries, routing = [], [], {}
        for rule, candidate in candidates:
            owner = owners.get(candidate["project"], {})
            route = rules_config.route_for(rule.rule_id, owner.get("budget_owner"))
            alert = _decide(candidate, rule, previous.get((rule.rule_id, candidate["segment_key"])), day, quality,
                            annotations, owner, route)
            alert["run_id"], alert["evaluated_at"] = run_id, evaluated_at
            alerts.append(alert)
            routing[alert["alert_id"]] = (route, owner.get("contact"))
        alerts = key_notices.state_changes_only(alerts)
        correlate(alerts)
        by_id = {alert["alert_id"]: alert for alert in alerts}
        for alert in alerts:
            _group_notification(alert, [by_id[linked] for linked in alert["linked_alert_ids"]])
        key_notices.bundle_per_owner(alerts, _rank)
        for alert in alerts:
            route, contact = routing[alert["alert_id"]]
            # A root pages at the most severe level of the alerts it carries.
            severity = max([alert["severity"], *(by_id[i]["severity"] for i in alert["linked_alert_ids"])], key=_rank)
            planned = (_planned_deliveries({**alert, "severity": severity}, route, contact, day)
                       if alert["is_notified"] else [])
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
    placeholders = ", ".join("cast(? as json)" if column in _JSON_COLUMNS else "?" for column in ALERT_COLUMNS)
    con.execute("begin transaction")
    try:
        con.execute("delete from marts.fct_alerts where usage_date = ?", [day])
        if alerts:
            con.executemany(
                f"insert into marts.fct_alerts ({', '.join(ALERT_COLUMNS)}) values ({placeholders})",
                [[json.dumps(alert[c], default=str) if c in _JSON_COLUMNS else alert[c] for c in ALERT_COLUMNS]
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
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return int(to_send)


# ----- delivery -------------------------------------------------------------------------------------------


def _pending(con, day: date) -> list[dict[str, Any]]:
    cursor = con.execute(
        """
        select deliveries.delivery_id, deliveries.channel, deliveries.route, deliveries.target,
               deliveries.attempts, alerts.*
        from marts.fct_alert_deliveries as deliveries
        inner join marts.fct_alerts as alerts using (alert_id)
        where deliveries.usage_date = ? and deliveries.status in ('pending', 'failed')
        order by deliveries.channel, deliveries.target,
                 case alerts.severity when 'critical' then 0 when 'warning' then 1 else 2 end,
                 alerts.impact_usd desc nulls last, alerts.alert_id
        """, [day])
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        for column in _JSON_COLUMNS:
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
    return rows


def alert_record(alert: dict[str, Any], delivery_id: str | None = None) -> dict[str, Any]:
    """The JSON form of an alert (a line of the daily file, the payload of the digest)."""
    keys = [c for c in ALERT_COLUMNS if c not in ("run_id", "evaluated_at")]
    record = {key: alert.get(key) for key in keys}
    for key, value in record.items():
        if isinstance(value, date):
            record[key] = value.isoformat()
        elif isinstance(value, float) and not math.isfinite(value):
            record[key] = None
    if delivery_id:
        record["delivery_id"] = delivery_id
    return record


def emit_day(day: date, run_id: str, *, config_dir: Path | None = None) -> dict[str, Any]:
    """Deliver the day's pending and failed deliveries and record each outcome; raises AlertDeliveryFailed."""

    rules_config = load_rules(config_dir)
    with connect() as con:
        pending = _pending(con, day)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in pending:
        groups[(row["channel"], row["route"], row["target"])].append(row)
    outcomes: dict[str, tuple[str, str | None]] = {}
    for (channel, route_name, target), rows in groups.items():
        route = rules_config.routes.get(route_name)
        if channel == "file":
            outcomes.update(_deliver_file(day, rows))
        elif route is None:
            outcomes.update({r["delivery_id"]: (SKIPPED, f"route {route_name!r} is no longer in rules.yaml")
                             for r in rows})
        elif channel == "slack":
            outcomes.update(_deliver_slack(rules_config, route, day, rows))
        elif channel == "email":
            outcomes.update(_deliver_email(rules_config, route, day, target, rows))
    attempted_at = datetime.now(UTC)
    if outcomes:
        with connect() as con:
            con.execute("begin transaction")
            try:
                for delivery_id, (status, error) in outcomes.items():
                    con.execute(
                        "update marts.fct_alert_deliveries set status = ?, attempts = attempts + 1, "
                        "first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?, "
                        "delivered_at = case when ? = 'sent' then ? else delivered_at end, last_error = ?, "
                        "last_run_id = ? where delivery_id = ?",
                        [status, attempted_at, attempted_at, status, attempted_at, error, run_id, delivery_id])
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
    counts = {status: sum(s == status for s, _ in outcomes.values()) for status in (SENT, FAILED, SKIPPED)}
    by_channel: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in pending:
        by_channel[row["channel"]][outcomes[row["delivery_id"]][0]] += 1
    summary = {"day": day.isoformat(), "run_id": run_id, "deliveries": len(pending), **counts,
               "by_channel": {channel: dict(states) for channel, states in by_channel.items()}}
    log.info("alert deliveries for %s: %s", day, summary)
    if counts[FAILED]:
        errors = sorted({error for status, error in outcomes.values() if status == FAILED and error})
        raise AlertDeliveryFailed(f"{counts[FAILED]} of {len(pending)} alert deliveries for {day} failed "
                                  f"(they will be retried): {'; '.join(errors)}")
    return summary


def _deliver_file(day: date, rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    from openrouter_spend import channels

    path = settings.paths().alerts / f"{day.isoformat()}.jsonl"
    try:
        channels.append_jsonl(path, [alert_record(row, row["delivery_id"]) for row in rows])
    except OSError as exc:
        return {row["delivery_id"]: (FAILED, f"could not write {path.name}: {type(exc).__name__}") for row in rows}
    return {row["delivery_id"]: (SENT, None) for row in rows}


def _deliver_slack(rules_config: RulesConfig, route: Route, day: date,
                   rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    from openrouter_spend import channels

    url = channels.slack_webhook_url(route.slack_connection_id, route.slack_env_var)
    if not url:
        reason = (f"no Slack webhook for route {route.name!r} (set ${route.slack_env_var} or Airflow connection "
                  f"{route.slack_connection_id!r})")
        return {row["delivery_id"]: (SKIPPED, reason) for row in rows}
    outcomes = {}
    size = rules_config.slack.alerts_per_message
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        try:
            channels.send_slack(url, slack_payload(route, day, chunk), rules_config.slack.timeout_seconds)
            outcomes.update({row["delivery_id"]: (SENT, None) for row in chunk})
        except channels.ChannelError as exc:
            outcomes.update({row["delivery_id"]: (FAILED, channels.scrub(str(exc), [url])) for row in chunk})
    return outcomes


def _deliver_email(rules_config: RulesConfig, route: Route, day: date, target: str,
                   rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    from openrouter_spend import channels

    email = rules_config.email
    server = channels.smtp_server(email.connection_id, email.env_prefix, email.from_address, email.timeout_seconds)
    if server is None:
        reason = f"no SMTP server (set {email.env_prefix}_HOST or Airflow connection {email.connection_id!r})"
        return {row["delivery_id"]: (SKIPPED, reason) for row in rows}
    recipients = target.removeprefix("email:").split(",")
    batch_key = hashlib.sha256("|".join(sorted(r["delivery_id"] for r in rows)).encode()).hexdigest()[:16]
    subject, text = email_content(route, day, rows)
    message = channels.build_email(server, recipients, subject, text, batch_key)
    try:
        channels.send_email(server, message)
    except channels.ChannelError as exc:
        return {row["delivery_id"]: (FAILED, str(exc)) for row in rows}
    return {row["delivery_id"]: (SENT, None) for row in rows}


# ----- message content ------------------------------------------------------------------------------------


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
