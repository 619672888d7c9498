"""Alert channels: the daily JSONL file, Slack incoming webhooks and SMTP email, with secrets kept secret.

Slack and email go through the Airflow providers' hooks (`SlackWebhookHook`, `SmtpHook`) on an Airflow
connection, so secrets come from any Airflow secrets backend and Airflow masks them in task logs. Where the
configuration names an environment variable instead (a route's `env_var`, the SMTP `env_prefix`), it wins
and becomes an in-memory connection of the provider's type, its secret registered with Airflow's masker.
Every error raised here is a ChannelError whose message names the channel and the cause, scrubbed of secrets.
"""

from __future__ import annotations

import email.policy
import json
import logging
import math
import os
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.sdk import Connection
from airflow.sdk.log import mask_secret

log = logging.getLogger(__name__)

DEFAULT_SENDER = "openrouter-spend@localhost"

# slack_sdk writes the webhook URL into its log (before each request at DEBUG, before a retry at INFO); the
# client logs here, and only warnings and errors get through.
_SLACK_CLIENT_LOG = logging.getLogger(f"{__name__}.slack_client")
_SLACK_CLIENT_LOG.setLevel(logging.WARNING)


class ChannelError(Exception):
    """A delivery failed; the message names the channel and the cause, never a secret."""


class ChannelNotConfigured(ChannelError):
    """The route names a channel whose secret (webhook URL, SMTP host) is not set."""


def scrub(text: str, secrets: list[str | None]) -> str:
    """`text` with every secret (and its URL-quoted forms) replaced by '***'."""
    from urllib.parse import quote

    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in {secret, quote(secret, safe=""), quote(secret, safe="/:")}:
                text = text.replace(form, "***")
    return text


def airflow_connection(conn_id: str | None):
    """The Airflow connection `conn_id`, or None when there is none (or Airflow cannot be asked)."""
    if not conn_id:
        return None
    from openrouter_spend.ingest import credentials

    return credentials.airflow_connection(conn_id)


class _ResolvedConnection:
    """A hook on the connection resolved in this module (the environment fallback included), not looked up again."""

    _connection: Connection

    def get_connection(self, conn_id: str) -> Connection:
        return self._connection


# ----- Slack ----------------------------------------------------------------------------------------------


class RouteSlackHook(_ResolvedConnection, SlackWebhookHook):
    """The Slack provider's incoming-webhook hook on a route's resolved connection."""

    def __init__(self, connection: Connection, timeout_seconds: float):
        super().__init__(slack_webhook_conn_id=connection.conn_id, timeout=math.ceil(timeout_seconds),
                         logger=_SLACK_CLIENT_LOG)
        self._connection = connection


def slack_connection(connection_id: str | None, env_var: str | None) -> Connection | None:
    """The route's incoming-webhook connection: from the environment variable first, else the Airflow connection."""
    url = os.environ.get(env_var, "").strip() if env_var else ""
    if not url:
        connection = airflow_connection(connection_id)
        if connection is None:
            return None
        if (connection.password or "").strip():
            return connection  # the provider's forms: the whole URL, or host + token
        # Also accepted: a connection of another type with the whole URL in `host` or extra `webhook_url`.
        extra = connection.extra_dejson
        url = next((str(value) for value in (extra.get("webhook_url"), connection.host)
                    if value and str(value).startswith("http")), "")
        if not url:
            return None
    mask_secret(url)
    return Connection(conn_id=connection_id or env_var, conn_type="slackwebhook", password=url)


def slack_hook(connection_id: str | None, env_var: str | None, timeout_seconds: float) -> RouteSlackHook | None:
    """The route's SlackWebhookHook, or None when neither its environment variable nor its connection is set."""
    connection = slack_connection(connection_id, env_var)
    return RouteSlackHook(connection, timeout_seconds) if connection is not None else None


def _slack_secrets(hook: RouteSlackHook) -> list[str | None]:
    """The webhook's secret forms: the connection's password (the URL or the token) and its path."""
    password = (hook.get_connection(hook.slack_webhook_conn_id).password or "").strip()
    return [password, urlsplit(password).path.strip("/")]


def slack_failure(exc: BaseException, hook: RouteSlackHook) -> ChannelError:
    """A ChannelError for an exception raised while posting to the hook's webhook, naming no secret."""
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    cause = type(reason if isinstance(reason, BaseException) else exc).__name__
    detail = scrub(str(exc), _slack_secrets(hook))[:200]
    if isinstance(exc, OSError):
        return ChannelError(f"Slack webhook unreachable: {cause}")
    return ChannelError(f"Slack webhook failed: {cause}: {detail}")


def send_slack(hook: RouteSlackHook, payload: dict[str, Any]) -> None:
    """POST one message through the hook's webhook client; raises ChannelError (without the URL) on any failure."""
    try:
        # The hook's client answers with the status and body (send_dict folds both into one exception text).
        client = hook.get_conn()
        response = client.send_dict(payload)
    except Exception as exc:
        raise slack_failure(exc, hook) from None
    if response.status_code != 200:
        body = scrub(str(response.body), [client.url, *_slack_secrets(hook)])[:200]
        raise ChannelError(f"Slack webhook answered HTTP {response.status_code}: {body}")


# ----- email ----------------------------------------------------------------------------------------------


class RouteSmtpHook(_ResolvedConnection, SmtpHook):
    """The smtp provider's hook on a resolved connection, able to send a message built by the caller."""

    def __init__(self, connection: Connection):
        super().__init__(smtp_conn_id=connection.conn_id)
        self._connection = self.smtp_connection = connection

    def send_message(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Connect and log in as the hook does, send `message` as built, close; returns the refused recipients."""
        # send_email_smtp builds its own single-part HTML message; alerts are text/plain with a Message-ID,
        # the digest multipart/alternative with inline images.
        try:
            self.get_conn()
            return self._smtp_client.send_message(message)
        finally:
            if self._smtp_client is not None:
                self._smtp_client.close()
                self._smtp_client = None


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def smtp_connection(connection_id: str | None, env_prefix: str, from_address: str | None,
                    timeout_seconds: float) -> Connection | None:
    """The SMTP server as an smtp-provider connection: <env_prefix>_HOST/... first, else the Airflow connection."""
    env = {key: os.environ.get(f"{env_prefix}_{key}", "").strip()
           for key in ("HOST", "PORT", "USER", "PASSWORD", "FROM", "STARTTLS", "SSL")}
    timeout = math.ceil(timeout_seconds)
    if env["HOST"]:
        port = int(env["PORT"]) if env["PORT"] else 25
        use_ssl = _flag(env["SSL"], port == 465)
        starttls = not use_ssl and _flag(env["STARTTLS"], port == 587)
        if env["PASSWORD"]:
            mask_secret(env["PASSWORD"])
        return Connection(
            conn_id=connection_id or env_prefix.lower(), conn_type="smtp", host=env["HOST"], port=port,
            login=env["USER"] or None, password=env["PASSWORD"] or None,
            extra=json.dumps({"from_email": env["FROM"] or from_address or DEFAULT_SENDER, "timeout": timeout,
                              "disable_ssl": not use_ssl, "disable_tls": not starttls}))
    connection = airflow_connection(connection_id)
    if connection is None or not connection.host:
        return None
    extra = connection.extra_dejson
    use_ssl = not _flag(extra.get("disable_ssl"), False)
    # The provider would also STARTTLS inside an SSL session (which servers refuse): SSL, else STARTTLS
    # unless disable_tls. The rules.yaml sender and timeout apply where the connection sets none.
    extra.update(disable_tls=use_ssl or _flag(extra.get("disable_tls"), False),
                 from_email=extra.get("from_email") or from_address or DEFAULT_SENDER,
                 timeout=extra.get("timeout") or timeout)
    return Connection(conn_id=connection.conn_id, conn_type="smtp", host=connection.host,
                      port=int(connection.port or (465 if use_ssl else 25)), login=connection.login or None,
                      password=connection.password or None, extra=json.dumps(extra))


def smtp_hook(connection_id: str | None, env_prefix: str, from_address: str | None,
              timeout_seconds: float) -> RouteSmtpHook | None:
    """The SmtpHook for alert and digest email, or None when no SMTP server is configured."""
    connection = smtp_connection(connection_id, env_prefix, from_address, timeout_seconds)
    return RouteSmtpHook(connection) if connection is not None else None


def message_id(message_key: str, from_address: str) -> str:
    """A Message-ID derived from `message_key`, so a resend of the same message can be recognised."""
    domain = from_address.rsplit("@", 1)[-1] if "@" in from_address else "openrouter-spend"
    return make_msgid(idstring=message_key, domain=domain)


def build_email(from_address: str, to: list[str], subject: str, text: str, message_key: str) -> EmailMessage:
    """A plain-text email with a Message-ID derived from `message_key`, so a resend can be recognised."""
    # Long subjects stay on one line (RFC 5322 allows 998 characters): folded, they read with a leading space.
    message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))
    message["From"] = from_address
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(message_key, from_address)
    message["X-OpenRouter-Spend-Batch"] = message_key
    message.set_content(text)
    return message


def smtp_failure(exc: BaseException, hook: RouteSmtpHook) -> ChannelError:
    """A ChannelError for an exception raised while sending through the hook, naming no credential."""
    detail = scrub(str(exc), [hook.smtp_password])[:200]
    return ChannelError(f"SMTP {hook.host}:{hook.port} failed: {type(exc).__name__}: {detail}")


def send_email(hook: RouteSmtpHook, message: EmailMessage) -> None:
    """Send one message through the SMTP hook; raises ChannelError (without credentials) on any failure."""
    try:
        refused = hook.send_message(message)
    except Exception as exc:
        raise smtp_failure(exc, hook) from None
    if refused:
        raise ChannelError(f"SMTP {hook.host}:{hook.port} refused {', '.join(sorted(refused))}")


# ----- file -----------------------------------------------------------------------------------------------


def append_jsonl(path: Path, records: list[dict[str, Any]], key: str = "delivery_id") -> int:
    """Append records not yet in the file (by `key`), fsynced; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    present.add(json.loads(line).get(key))
                except json.JSONDecodeError:
                    log.warning("%s has a line that is not JSON; keeping it and appending after it", path)
    fresh = [record for record in records if record[key] not in present]
    if fresh:
        with open(path, "a") as handle:
            for record in fresh:
                handle.write(json.dumps(record, default=str, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    return len(fresh)
