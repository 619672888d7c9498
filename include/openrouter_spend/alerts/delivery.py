"""Alert delivery: send the day's pending and previously failed deliveries (JSONL file, Slack, email).

`emit_day` reads what the ledger (alerts.ledger) planned, sends it and records each outcome; a rerun sends
what failed and never repeats what succeeded. `send` is how every alert and notice goes out: rendered
messages, one per channel target.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.alerts.ledger import ALERT_COLUMNS, FAILED, JSON_COLUMNS, SENT, SKIPPED
from openrouter_spend.alerts.render import email_content, slack_payload
from openrouter_spend.alerts.rules import Route, RulesConfig
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
    messages = [message for (channel, route_name, target), rows in groups.items()
                for message in _messages(rules_config, channel, route_name, target, day, rows)]
    outcomes: dict[str, tuple[str, str | None]] = {}
    for (_, rows), outcome in zip(messages, send([message for message, _ in messages], rules_config), strict=True):
        outcomes.update({row["delivery_id"]: outcome for row in rows})
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


def _messages(rules_config: RulesConfig, channel: str, route_name: str, target: str, day: date,
              rows: list[dict]) -> list[tuple[Outgoing, list[dict]]]:
    """The messages that carry the alerts `rows` to one target, each with the rows it carries."""
    route = rules_config.routes.get(route_name)
    if channel == "file":
        records = [alert_record(row, row["delivery_id"]) for row in rows]
        return [(Outgoing(channel, route_name, f"alerts/{day.isoformat()}.jsonl", records), rows)]
    if route is None:
        return [(Outgoing(channel, route_name, target, None), rows)]
    if channel == "slack":
        size = rules_config.slack.alerts_per_message
        chunks = [rows[start:start + size] for start in range(0, len(rows), size)]
        return [(Outgoing(channel, route_name, target, slack_payload(route, day, chunk)), chunk) for chunk in chunks]
    batch_key = hashlib.sha256("|".join(sorted(r["delivery_id"] for r in rows)).encode()).hexdigest()[:16]
    return [(Outgoing(channel, route_name, target, email_content(route, day, rows), batch_key), rows)]


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one target: what alerts, idle-key notices and savings notices all send.

    `body` is the channel's content: JSON records for the file (`target` names it under the alerts folder), a
    webhook payload for Slack, (subject, text) for e-mail, whose `target` is 'email:' and the recipients.
    `message_key` identifies an e-mail across retries (its Message-ID).
    """

    channel: str
    route: str
    target: str
    body: Any
    message_key: str = ""


def send(messages: list[Outgoing], rules_config: RulesConfig) -> list[tuple[str, str | None]]:
    """Send each message on its channel: (status, error naming no secret) per message, in order."""
    from openrouter_spend.alerts import channels

    hooks: dict[tuple[str, str], Any] = {}
    outcomes = []
    for message in messages:
        route = rules_config.routes.get(message.route)
        if message.channel == "file":
            outcomes.append(_append_file(message))
        elif route is None:
            outcomes.append((SKIPPED, f"route {message.route!r} is no longer in rules.yaml"))
        else:
            if (message.channel, route.name) not in hooks:
                hooks[(message.channel, route.name)] = _hook(message.channel, route, rules_config)
            hook = hooks[(message.channel, route.name)]
            try:
                outcomes.append(_send(hook, message, route, rules_config))
            except channels.ChannelError as exc:
                outcomes.append((FAILED, str(exc)))
    return outcomes


def _append_file(message: Outgoing) -> tuple[str, str | None]:
    from openrouter_spend.alerts import channels

    path = settings.paths().alerts / Path(message.target).name
    try:
        channels.append_jsonl(path, message.body)
    except OSError as exc:
        return FAILED, f"could not write {path.name}: {type(exc).__name__}"
    return SENT, None


def _hook(channel: str, route: Route, rules_config: RulesConfig) -> Any:
    """The channel's hook for `route`, or None when no webhook or SMTP server is configured."""
    from openrouter_spend.alerts import channels

    if channel == "slack":
        return channels.slack_hook(route.slack_connection_id, route.slack_env_var,
                                   rules_config.slack.timeout_seconds)
    if channel == "email":
        email = rules_config.email
        return channels.smtp_hook(email.connection_id, email.env_prefix, email.from_address, email.timeout_seconds)
    raise ValueError(f"unknown delivery channel {channel!r}")


def _send(hook: Any, message: Outgoing, route: Route, rules_config: RulesConfig) -> tuple[str, str | None]:
    from openrouter_spend.alerts import channels

    if message.channel == "slack":
        if hook is None:
            return SKIPPED, (f"no Slack webhook for route {route.name!r} (set ${route.slack_env_var} or Airflow "
                             f"connection {route.slack_connection_id!r})")
        channels.send_slack(hook, message.body)
        return SENT, None
    email = rules_config.email
    if hook is None:
        return SKIPPED, f"no SMTP server (set {email.env_prefix}_HOST or Airflow connection {email.connection_id!r})"
    subject, text = message.body
    recipients = message.target.removeprefix("email:").split(",")
    channels.send_email(hook, channels.build_email(hook.from_email, recipients, subject, text, message.message_key))
    return SENT, None
