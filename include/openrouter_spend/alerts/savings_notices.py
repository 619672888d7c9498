"""Weekly savings notices: each budget owner's three largest savings opportunities, once a week, at info level.

Not an alert: the rule ids of marts.fct_alerts are a fixed contract (product.md §5.3), so a notice has no
ledger row there. It follows its owner's alert route and channels (the JSONL file always; Slack and e-mail
when the route's min_severity is info, like any info alert) and is recorded in meta.savings_notices, one
row per notice × channel target. Cadence: one notice per owner per ISO week of usage days, built from the
opportunities (reports.digest.savings) of the first usage day of the week whose alerts are emitted:
Monday's, emitted early on Tuesday UTC, at the start of the working week, its run rate covering the 7 days
to Monday. Once a week has rows, later days of that week and reruns only retry the deliveries that failed
or never finished, with the text first planned: nothing is sent twice. A day that failed the quality gate
or lies more than STALE_AFTER_DAYS in the past (a backfill) sends nothing. docs/alerts.md, "Weekly
savings notices".
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend import rendering
from openrouter_spend.alerts.delivery import AlertDeliveryFailed, Outgoing, send
from openrouter_spend.alerts.ledger import (
    FAILED,
    PENDING,
    SENT,
    SKIPPED,
    project_owners,
    quality_status,
)
from openrouter_spend.alerts.rules import SEVERITIES, RulesConfig
from openrouter_spend.reports.digest import savings
from openrouter_spend.warehouse import connect, transaction

log = logging.getLogger(__name__)

SEVERITY = "info"
# A notice about a usage day older than this (a backfill) is news to nobody.
STALE_AFTER_DAYS = 7
# The name a notice is routed under: rules.route_for sends every name but data_quality to the owner's route.
ROUTED_AS = "savings_notice"
NOTICE = "alerts/savings_notice.txt.j2"
SLACK = "alerts/slack/savings_notice.mrkdwn.j2"
SUBJECT = "alerts/email/savings_notice.header.j2"
# What a notice keeps of each opportunity (meta.savings_notices.notice, the JSONL line).
OPPORTUNITY_FIELDS = ("opportunity_kind", "label", "project", "budget_owner", "model", "api_key_name",
                      "monthly_saving_usd", "bound_kind", "saving", "action", "basis")
COLUMNS = ("delivery_id", "notice_id", "week_start", "usage_date", "owner", "budget_owner", "channel", "route",
           "target", "status", "attempts", "opportunities", "monthly_saving_usd", "notice", "first_attempt_at",
           "last_attempt_at", "delivered_at", "last_error", "last_run_id")


def _today() -> date:
    return datetime.now(UTC).date()


def _is_stale(day: date, today: date | None) -> bool:
    """A usage day more than STALE_AFTER_DAYS before today (a backfill) sends no notice."""
    return ((today or _today()) - day).days > STALE_AFTER_DAYS


def week_start(day: date) -> date:
    """The Monday of the ISO week of `day`: the week a notice belongs to."""
    return day - timedelta(days=day.weekday())


def _hashed(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()[:24]


def notices(con, day: date) -> list[dict[str, Any]]:
    """One notice per owner from the day's opportunities: the top three, the total, the text to send."""
    contacts = {project: owner.get("contact") for project, owner in project_owners(con, day).items()}
    return [build_notice(day, owner, listed, next((contacts[p] for p in listed["projects"] if contacts.get(p)), None))
            for owner, listed in savings.per_owner(savings.read(con, day)).items()]


def build_notice(day: date, owner: str, listed: dict[str, Any], contact: str | None) -> dict[str, Any]:
    """The notice to `owner` from its entry of savings.per_owner: JSON-ready, with its title and message."""
    notice = {
        "notice_id": _hashed("svn_", week_start(day), owner), "owner": owner,
        "budget_owner": listed["budget_owner"], "projects": listed["projects"], "contact": contact,
        "usage_date": day.isoformat(), "week_start": week_start(day).isoformat(),
        "count": listed["count"], "total_usd": listed["total_usd"], "total_text": listed["total_text"],
        "more_text": listed["more_text"],
        "top": [{name: row.get(name) for name in OPPORTUNITY_FIELDS} for row in listed["top"]],
    }
    notice["title"] = rendering.render_blocks(NOTICE, ("title",), notice=notice)["title"]
    notice["message"] = rendering.render_blocks(NOTICE, ("message",), notice=notice, title=notice["title"])["message"]
    return notice


def _targets(notice: dict[str, Any], rules_config: RulesConfig) -> list[tuple[str, str, str]]:
    """(channel, route, target) of a notice: the file always, Slack and e-mail when the route takes info."""
    route = rules_config.route_for(ROUTED_AS, notice["budget_owner"])
    targets = [("file", route.name, f"alerts/savings-{notice['usage_date']}.jsonl")]
    if SEVERITIES.index(SEVERITY) >= SEVERITIES.index(route.min_severity):
        if route.has_slack:
            targets.append(("slack", route.name, f"slack:{route.name}"))
        recipients = route.email_recipients(notice["contact"])
        if recipients:
            targets.append(("email", route.name, "email:" + ",".join(recipients)))
    return targets


def plan(con, day: date, rules_config: RulesConfig) -> list[dict[str, Any]]:
    """The deliveries of the day's notices, one per notice × channel target, not yet attempted."""
    return [{"delivery_id": _hashed("svd_", notice["notice_id"], channel, target), "notice_id": notice["notice_id"],
             "week_start": week_start(day), "usage_date": day, "owner": notice["owner"],
             "budget_owner": notice["budget_owner"], "channel": channel, "route": route, "target": target,
             "status": PENDING, "attempts": 0, "opportunities": notice["count"],
             "monthly_saving_usd": notice["total_usd"], "notice": notice}
            for notice in notices(con, day) for channel, route, target in _targets(notice, rules_config)]


def _recorded(con, week: date) -> list[dict[str, Any]]:
    cursor = con.execute("select * from meta.savings_notices where week_start = ? order by delivery_id", [week])
    names = [d[0] for d in cursor.description]
    found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in found:
        row["notice"] = json.loads(row["notice"])
    return found


def is_due(day: date, *, today: date | None = None) -> bool:
    """True when emit_week(day) has work: a week with no notice planned yet, or deliveries to retry."""
    if _is_stale(day, today):
        return False
    with connect() as con:
        recorded = _recorded(con, week_start(day))
    return not recorded or any(row["status"] in (PENDING, FAILED) for row in recorded)


def emit_week(day: date, run_id: str, *, config_dir: Path | None = None, today: date | None = None) -> dict[str, Any]:
    """Send the week's savings notices if `day` is the first emitted day of its week, else retry what failed."""
    week = week_start(day)
    summary: dict[str, Any] = {"day": day.isoformat(), "week_start": week.isoformat(), "deliveries": 0,
                               SENT: 0, FAILED: 0, SKIPPED: 0}
    if _is_stale(day, today):
        return {**summary, "status": "stale"}
    from openrouter_spend.context import rules_config as parsed_rules

    rules_config = parsed_rules(config_dir)
    with connect() as con:
        recorded = _recorded(con, week)
        if recorded:
            status, pending = "retried", [row for row in recorded if row["status"] in (PENDING, FAILED)]
        elif quality_status(con, day).status == "failed":
            return {**summary, "status": "blocked"}
        else:
            status, pending = "planned", plan(con, day, rules_config)
            _insert(con, pending, run_id)
    sent = send([_message(row) for row in pending], rules_config)
    outcomes = {row["delivery_id"]: outcome for row, outcome in zip(pending, sent, strict=True)}
    if outcomes:
        _record(outcomes, run_id)
    counts = {state: sum(s == state for s, _ in outcomes.values()) for state in (SENT, FAILED, SKIPPED)}
    summary.update(status=status, notices=len({row["notice_id"] for row in pending}), deliveries=len(pending),
                   **counts)
    log.info("savings notices for the week of %s: %s", week, summary)
    if counts[FAILED]:
        errors = sorted({error for state, error in outcomes.values() if state == FAILED and error})
        raise AlertDeliveryFailed(f"{counts[FAILED]} of {len(pending)} savings-notice deliveries for the week of "
                                  f"{week} failed (they will be retried): {'; '.join(errors)}")
    return summary


def _insert(con, pending: list[dict[str, Any]], run_id: str) -> None:
    """Record the planned deliveries before any is sent, so the week's notice is planned once."""
    now = datetime.now(UTC)
    with transaction(con):
        for row in pending:
            values = {**row, "notice": json.dumps(row["notice"], default=str), "first_attempt_at": now,
                      "last_attempt_at": now, "delivered_at": None, "last_error": None, "last_run_id": run_id}
            con.execute(f"insert into meta.savings_notices ({', '.join(COLUMNS)}) values "
                        f"({', '.join('?' for _ in COLUMNS)})", [values[column] for column in COLUMNS])


def _record(outcomes: dict[str, tuple[str, str | None]], run_id: str) -> None:
    now = datetime.now(UTC)
    with connect() as con, transaction(con):
        for delivery_id, (status, error) in outcomes.items():
            con.execute(
                "update meta.savings_notices set status = ?, attempts = attempts + 1, last_attempt_at = ?, "
                "delivered_at = case when ? = 'sent' then ? else delivered_at end, last_error = ?, last_run_id = ? "
                "where delivery_id = ?", [status, now, status, now, error, run_id, delivery_id])


def _message(row: dict[str, Any]) -> Outgoing:
    """The rendered message of one notice to one target."""
    notice, channel = row["notice"], row["channel"]
    if channel == "file":
        record = {"delivery_id": row["delivery_id"], "kind": "savings_notice", "severity": SEVERITY,
                  "route": row["route"], **{k: v for k, v in notice.items() if k != "contact"}}
        body: Any = [record]
    elif channel == "slack":
        body = slack_payload(notice)
    else:
        body = (email_subject(notice), notice["message"])
    return Outgoing(channel, row["route"], row["target"], body, row["delivery_id"])


def slack_payload(notice: dict[str, Any]) -> dict[str, Any]:
    """An incoming-webhook payload for one notice; every name Slack-escaped."""
    text = rendering.render(SLACK, notice=notice)
    return {"text": text.split("\n", 1)[0], "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                                  "text": text[:2900]}}]}


def email_subject(notice: dict[str, Any]) -> str:
    """The one-line subject of a notice's e-mail."""
    return rendering.render(SUBJECT, notice=notice)
