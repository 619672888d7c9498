"""Alert messages: the title and text of an alert, and the Slack and email content of a route's alerts.

The texts are templates under templates/alerts/: one per rule (its headline and lines), the message layout,
the "Reproduce:" query per rule (SQL environment: every value a literal), the Slack texts (Slack environment:
every value escaped) and the e-mail subject (header environment) and body.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from openrouter_spend import rendering
from openrouter_spend.alerts import key_notices
from openrouter_spend.alerts.ledger import BLOCKED, SUPPRESSED, Quality
from openrouter_spend.alerts.rules import (
    Route,
)


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


def reproduce_sql(rule_id: str, day: date, project: str | None, key: str | None) -> str:
    """The query that shows an alert's rows, every value a SQL literal; empty for a rule without one."""
    template = f"alerts/reproduce/{rule_id}.sql.j2"
    if not rendering.has_template(template):
        return ""
    return rendering.render(template, day=str(day), project=project, key=key or "")


def _numbers() -> dict[str, Any]:
    return {"usd": _usd, "pct": _pct, "times": _times, "number": _number}


def render(alert: dict, rule, owner: dict[str, str | None], quality: Quality) -> tuple[str, str]:
    """Title and plain-text body of an alert: enough to act on without opening the warehouse."""
    context = {
        "alert": alert, "facts": alert["facts"], "day": alert["usage_date"], "observed": alert["observed_value"],
        "expected": alert["expected_value"], "impact": alert["impact_usd"], "threshold": alert["threshold_value"],
        "segment": rendering.render("alerts/segment.txt.j2", alert=alert),
        "RESOLVED": key_notices.RESOLVED, **_numbers(),
    }
    rule_template = f"alerts/rules/{alert['rule_id']}.txt.j2"
    what = rendering.render_blocks(
        rule_template if rendering.has_template(rule_template) else "alerts/rules/default.txt.j2",
        ("headline", "lines", "action"), **context, owner=owner)
    title = rendering.render("alerts/title.txt.j2", alert=alert, headline=what["headline"])
    body = rendering.render(
        "alerts/message.txt.j2", **context, title=title, lines=what["lines"], action=what["action"].strip(),
        owner=owner, quality=quality,
        contributors=rendering.render("alerts/contributors.txt.j2", contributors=alert["contributors"],
                                      **_numbers()),
        reproduce=reproduce_sql(alert["rule_id"], alert["usage_date"], alert["project"], alert.get("api_key_hash")),
        SUPPRESSED=SUPPRESSED, BLOCKED=BLOCKED)
    return title, body


def slack_payload(route: Route, day: date, rows: list[dict]) -> dict[str, Any]:
    """An incoming-webhook payload: a header, one section per alert, a context line; every name Slack-escaped."""
    critical = sum(r["severity"] == "critical" for r in rows)
    text = rendering.render("alerts/slack/summary.mrkdwn.j2", rows=rows, day=day, critical=critical)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": text[:150]}}]
    for row in rows:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_text(row)[:2900]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": rendering.render(
        "alerts/slack/context.mrkdwn.j2", route=route, rows=rows)}]})
    return {"text": text, "blocks": blocks}


def _slack_text(row: dict) -> str:
    """The alert's plain-text message as mrkdwn: the title in bold, the text escaped (`<!channel>` stays text)."""
    title, *rest = row["message"].split("\n")
    return rendering.render("alerts/slack/alert.mrkdwn.j2", title=title,
                            rest=[line for line in rest if line.strip()])


def email_content(route: Route, day: date, rows: list[dict]) -> tuple[str, str]:
    """Subject and body of the email carrying a route's alerts of the day."""
    critical = sum(r["severity"] == "critical" for r in rows)
    return (rendering.render("alerts/email/subject.header.j2", rows=rows, day=day, critical=critical),
            rendering.render("alerts/email/body.txt.j2", rows=rows, day=day, route=route))
