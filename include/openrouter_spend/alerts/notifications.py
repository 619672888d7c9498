"""Pipeline-failure notifications attached to every task through the DAG's default_args.

`record_task_failure` keeps every failure; `PipelineFailureNotifier` decides whether to page (a permanent
error once per run) and pages the route through the Slack and smtp providers' notifiers, on the hooks the
alert channels resolve (openrouter_spend.alerts.channels).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from openrouter_spend.config import settings

FAILURES_FILE = "task_failures.jsonl"


def record_task_failure(context) -> None:
    """on_failure_callback: append the failed task and its error to $AIRFLOW_HOME/task_failures.jsonl."""
    home = Path(os.environ.get("AIRFLOW_HOME") or settings.paths().airflow_home)
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    entry = {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
        "error_type": type(exception).__name__ if exception else None,
        "error": str(exception) if exception else "task failed (no exception recorded)",
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    home.mkdir(parents=True, exist_ok=True)
    with open(home / FAILURES_FILE, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def _context_value(context, key: str, attribute: str | None = None):
    ti = context.get("ti") or context.get("task_instance")
    value = context.get(key)
    if value is None and ti is not None and attribute:
        value = getattr(ti, attribute, None)
    return value


def failure_message(context) -> tuple[str, str]:
    """Subject and plain-text body telling the data-engineering route which task failed and why."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or _context_value(context, "dag_id")
    task_id = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", -1)
    run_id = _context_value(context, "run_id", "run_id")
    exception = context.get("exception")
    error = f"{type(exception).__name__}: {exception}" if exception else "task failed (no exception recorded)"
    interval = context.get("data_interval_start")
    task_label = f"{task_id}[{map_index}]" if map_index not in (None, -1) else str(task_id)
    subject = f"[openrouter-spend] pipeline task {task_label} failed in {dag_id}"
    lines = [
        subject, "",
        f"DAG: {dag_id}",
        f"Task: {task_label} (try {getattr(ti, 'try_number', '?')})",
        f"Run: {run_id}" + (f" (data interval from {interval})" if interval else ""),
        f"Error: {error[:2000]}",
    ]
    log_url = getattr(ti, "log_url", None)
    if log_url:
        lines.append(f"Log: {log_url}")
    lines += ["", "The task's retries are exhausted. Fix the cause and clear the task (or rerun the day); "
                  "alerts already sent are never sent twice."]
    return subject, "\n".join(lines)


def is_permanent(context) -> bool:
    """Whether the task's retry policy fails this exception at once (the DAG classifies errors in one place)."""
    from airflow.sdk import RetryAction

    exception, task = context.get("exception"), context.get("task")
    policy = getattr(task, "retry_policy", None)
    if exception is None or policy is None:
        return False
    ti = context.get("ti") or context.get("task_instance")
    try:
        decision = policy.evaluate(exception, getattr(ti, "try_number", 1) or 1, getattr(task, "retries", 0) + 1,
                                   context)
    except Exception:  # a policy that cannot decide must not hide the failure being reported
        return False
    return decision.action == RetryAction.FAIL


def first_page_of_run(context, ledger: Path | None = None) -> bool:
    """True the first time a run reports a permanent error of this type; later tasks of the run stay quiet.

    One cause (a revoked key, an empty account) fails every task that calls the API; the route is paged once.
    The ledger lives in the spend home, shared by every worker of a deployment.
    """
    import fcntl

    run_id = _context_value(context, "run_id", "run_id")
    exception = context.get("exception")
    key = f"{run_id}|{type(exception).__module__}.{type(exception).__qualname__}"
    ledger = ledger or settings.paths().alerts / "pipeline-pages.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        if any(json.loads(line).get("key") == key for line in handle if line.strip()):
            return False
        handle.write(json.dumps({"key": key, "paged_at": datetime.now(UTC).isoformat()}) + "\n")
        return True


def notify_pipeline_failure(context, route_name: str = "data-engineering", config_dir: Path | None = None) -> dict:
    """Page the route's Slack webhook and email through the providers' notifiers; never raises.

    Returns each channel's outcome. A permanent error pages once per run (`first_page_of_run`), however many
    tasks it fails.
    """
    import logging

    from openrouter_spend.context import rules_config as parsed_rules

    log = logging.getLogger(__name__)
    if is_permanent(context) and not first_page_of_run(context):
        log.info("pipeline failure not paged again: the run already reported this permanent error")
        return {"route": "already paged for this run"}
    try:
        rules_config = parsed_rules(config_dir, cross_check=False)
        route = rules_config.routes[route_name]
    except Exception as exc:  # a broken rules.yaml must not hide the task failure being reported
        log.error("cannot notify pipeline failure: %s", exc)
        return {"route": f"unavailable: {type(exc).__name__}"}
    subject, text = failure_message(context)
    outcome: dict[str, str] = {}
    if route.has_slack:
        outcome["slack"] = _page_slack(context, rules_config, route, subject, text)
    recipients = [address for address in route.email_to if "@" in address]
    if recipients:
        outcome["email"] = _page_email(context, rules_config, recipients, subject, text)
    for channel, state in outcome.items():
        (log.warning if state.startswith("failed") else log.info)("pipeline failure %s: %s", channel, state)
    return outcome


def _page_slack(context, rules_config, route, subject: str, text: str) -> str:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    from openrouter_spend import escaping
    from openrouter_spend.alerts import channels

    hook = channels.slack_hook(route.slack_connection_id, route.slack_env_var, rules_config.slack.timeout_seconds)
    if hook is None:
        return "skipped: no webhook configured"
    # The error text can carry names from the API or the configuration: Slack-escaped, like alerts.
    notifier = SlackWebhookNotifier(
        slack_webhook_conn_id=hook.slack_webhook_conn_id, text=escaping.slack(subject),
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": f"*{escaping.slack(subject)}*\n"
                                             + escaping.slack(text.split("\n", 2)[2])}}])
    notifier.hook = hook  # the route's resolved connection (its environment variable included)
    try:
        # notify(), not the notifier's __call__: the texts are data, never rendered as Jinja templates.
        notifier.notify(context)
    except Exception as exc:
        return f"failed: {channels.slack_failure(exc, hook)}"
    return "sent"


def _page_email(context, rules_config, recipients: list[str], subject: str, text: str) -> str:
    import hashlib
    import html

    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from openrouter_spend.alerts import channels

    email = rules_config.email
    hook = channels.smtp_hook(email.connection_id, email.env_prefix, email.from_address, email.timeout_seconds)
    if hook is None:
        return "skipped: no SMTP server configured"
    key = hashlib.sha256(subject.encode() + str(_context_value(context, "run_id", "run_id")).encode())
    notifier = SmtpNotifier(
        to=recipients, from_email=hook.from_email, subject=subject, smtp_conn_id=hook.smtp_conn_id,
        html_content=f"<pre>{html.escape(text)}</pre>",  # the notifier sends HTML only
        custom_headers={"Message-ID": channels.message_id(key.hexdigest()[:16], hook.from_email)})
    notifier.hook = hook
    try:
        notifier.notify(context)  # not __call__: nothing here is a template
    except Exception as exc:
        return f"failed: {channels.smtp_failure(exc, hook)}"
    return "sent"


def _pipeline_failure_notifier_class():
    from airflow.sdk import BaseNotifier

    class PipelineFailureNotifier(BaseNotifier):
        """Task on_failure_callback: pages the route through SlackWebhookNotifier and SmtpNotifier."""

        template_fields = ("route_name",)

        def __init__(self, route_name: str = "data-engineering"):
            super().__init__()
            self.route_name = route_name

        def notify(self, context):
            notify_pipeline_failure(context, self.route_name)

    PipelineFailureNotifier.__module__ = __name__
    PipelineFailureNotifier.__qualname__ = "PipelineFailureNotifier"
    return PipelineFailureNotifier


def __getattr__(name: str):
    # Built on first use so importing this module (the runner does, before it configures Airflow) does not
    # import the Airflow SDK.
    if name == "PipelineFailureNotifier":
        cls = _pipeline_failure_notifier_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
