"""Alert delivery: send the day's pending and previously failed deliveries (JSONL file, Slack, email).

`emit_day` reads what the ledger (alerts.ledger) planned, sends it and records each outcome; a rerun sends
what failed and never repeats what succeeded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.alerts.ledger import ALERT_COLUMNS, FAILED, JSON_COLUMNS, SENT, SKIPPED
from openrouter_spend.alerts.render import email_content, slack_payload
from openrouter_spend.alerts.rules import (
    Route,
    RulesConfig,
)
from openrouter_spend.config import settings
from openrouter_spend.warehouse import connect, transaction

log = logging.getLogger(__name__)


class AlertDeliveryFailed(Exception):
    """Some deliveries failed; they are recorded as failed and the next run (or retry) sends them."""


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
        for column in JSON_COLUMNS:
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

    from openrouter_spend.context import rules_config as parsed_rules

    rules_config = parsed_rules(config_dir)
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
            with transaction(con):
                for delivery_id, (status, error) in outcomes.items():
                    con.execute(
                        "update marts.fct_alert_deliveries set status = ?, attempts = attempts + 1, "
                        "first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?, "
                        "delivered_at = case when ? = 'sent' then ? else delivered_at end, last_error = ?, "
                        "last_run_id = ? where delivery_id = ?",
                        [status, attempted_at, attempted_at, status, attempted_at, error, run_id, delivery_id])
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
    from openrouter_spend.alerts import channels

    path = settings.paths().alerts / f"{day.isoformat()}.jsonl"
    try:
        channels.append_jsonl(path, [alert_record(row, row["delivery_id"]) for row in rows])
    except OSError as exc:
        return {row["delivery_id"]: (FAILED, f"could not write {path.name}: {type(exc).__name__}") for row in rows}
    return {row["delivery_id"]: (SENT, None) for row in rows}


def _deliver_slack(rules_config: RulesConfig, route: Route, day: date,
                   rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    from openrouter_spend.alerts import channels

    hook = channels.slack_hook(route.slack_connection_id, route.slack_env_var, rules_config.slack.timeout_seconds)
    if hook is None:
        reason = (f"no Slack webhook for route {route.name!r} (set ${route.slack_env_var} or Airflow connection "
                  f"{route.slack_connection_id!r})")
        return {row["delivery_id"]: (SKIPPED, reason) for row in rows}
    outcomes = {}
    size = rules_config.slack.alerts_per_message
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        try:
            channels.send_slack(hook, slack_payload(route, day, chunk))
            outcomes.update({row["delivery_id"]: (SENT, None) for row in chunk})
        except channels.ChannelError as exc:
            outcomes.update({row["delivery_id"]: (FAILED, str(exc)) for row in chunk})
    return outcomes


def _deliver_email(rules_config: RulesConfig, route: Route, day: date, target: str,
                   rows: list[dict]) -> dict[str, tuple[str, str | None]]:
    from openrouter_spend.alerts import channels

    email = rules_config.email
    hook = channels.smtp_hook(email.connection_id, email.env_prefix, email.from_address, email.timeout_seconds)
    if hook is None:
        reason = f"no SMTP server (set {email.env_prefix}_HOST or Airflow connection {email.connection_id!r})"
        return {row["delivery_id"]: (SKIPPED, reason) for row in rows}
    recipients = target.removeprefix("email:").split(",")
    batch_key = hashlib.sha256("|".join(sorted(r["delivery_id"] for r in rows)).encode()).hexdigest()[:16]
    subject, text = email_content(route, day, rows)
    message = channels.build_email(hook.from_email, recipients, subject, text, batch_key)
    try:
        channels.send_email(hook, message)
    except channels.ChannelError as exc:
        return {row["delivery_id"]: (FAILED, str(exc)) for row in rows}
    return {row["delivery_id"]: (SENT, None) for row in rows}
