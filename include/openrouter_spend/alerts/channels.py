"""Alert channels: the daily JSONL file, Slack incoming webhooks and SMTP email, with secrets kept secret.

Webhook URLs and SMTP credentials are read from an environment variable or an Airflow connection at send
time and never logged, stored or put in an exception: every error raised here is a ChannelError whose
message has been scrubbed of them.
"""

from __future__ import annotations

import email.policy
import json
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    from openrouter_spend.ingest import client

    return client.airflow_connection(conn_id)


# ----- Slack ----------------------------------------------------------------------------------------------


def slack_webhook_url(connection_id: str | None, env_var: str | None) -> str | None:
    """The route's webhook URL: the environment variable first, else the Airflow connection."""
    if env_var and os.environ.get(env_var, "").strip():
        return os.environ[env_var].strip()
    connection = airflow_connection(connection_id)
    if connection is None:
        return None
    extra = connection.extra_dejson if hasattr(connection, "extra_dejson") else {}
    for candidate in (extra.get("webhook_url"), connection.password, connection.host):
        if candidate and str(candidate).startswith("http"):
            return str(candidate)
    if connection.password:  # the Slack provider's convention: host https://hooks.slack.com/services + token
        host = (connection.host or "https://hooks.slack.com/services").rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        return f"{host}/{connection.password.lstrip('/')}"
    return None


def send_slack(url: str, payload: dict[str, Any], timeout_seconds: float) -> None:
    """POST one message to an incoming webhook; raises ChannelError (without the URL) on any failure."""
    import requests

    try:
        response = requests.post(url, json=payload, timeout=(min(5.0, timeout_seconds), timeout_seconds))
    except requests.RequestException as exc:
        raise ChannelError(f"Slack webhook unreachable: {type(exc).__name__}") from None
    if response.status_code >= 300:
        body = scrub(response.text[:200], [url])
        raise ChannelError(f"Slack webhook answered HTTP {response.status_code}: {body}")


# ----- email ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send email; repr hides the password."""

    host: str
    port: int
    user: str | None
    password: str | None
    from_address: str
    starttls: bool
    use_ssl: bool
    timeout_seconds: float

    def __repr__(self) -> str:
        return (f"SmtpServer(host={self.host!r}, port={self.port}, user={self.user!r}, password=***, "
                f"from_address={self.from_address!r}, starttls={self.starttls}, use_ssl={self.use_ssl})")


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def smtp_server(connection_id: str | None, env_prefix: str, from_address: str | None,
                timeout_seconds: float) -> SmtpServer | None:
    """The SMTP server from <env_prefix>_HOST/_PORT/_USER/_PASSWORD/_FROM/_STARTTLS/_SSL, else the connection."""
    env = {key: os.environ.get(f"{env_prefix}_{key}", "").strip()
           for key in ("HOST", "PORT", "USER", "PASSWORD", "FROM", "STARTTLS", "SSL")}
    if env["HOST"]:
        port = int(env["PORT"]) if env["PORT"] else 25
        return SmtpServer(env["HOST"], port, env["USER"] or None, env["PASSWORD"] or None,
                          env["FROM"] or from_address or "openrouter-spend@localhost",
                          _flag(env["STARTTLS"], port == 587), _flag(env["SSL"], port == 465), timeout_seconds)
    connection = airflow_connection(connection_id)
    if connection is None or not connection.host:
        return None
    # The smtp provider's conventions, so one smtp_default serves SmtpNotifier and these alerts alike:
    # SSL unless extra.disable_ssl, else STARTTLS unless extra.disable_tls; extra.from_email.
    extra = connection.extra_dejson if hasattr(connection, "extra_dejson") else {}
    use_ssl = not _flag(extra.get("disable_ssl"), False)
    starttls = not use_ssl and not _flag(extra.get("disable_tls"), False)
    port = int(connection.port or (465 if use_ssl else 25))
    return SmtpServer(connection.host, port, connection.login or None, connection.password or None,
                      extra.get("from_email") or from_address or "openrouter-spend@localhost", starttls, use_ssl,
                      timeout_seconds)


def build_email(server: SmtpServer, to: list[str], subject: str, text: str, message_key: str) -> EmailMessage:
    """A plain-text email with a Message-ID derived from `message_key`, so a resend can be recognised."""
    # Long subjects stay on one line (RFC 5322 allows 998 characters): folded, they read with a leading space.
    message = EmailMessage(policy=email.policy.default.clone(max_line_length=998))
    message["From"] = server.from_address
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = server.from_address.rsplit("@", 1)[-1] if "@" in server.from_address else "openrouter-spend"
    message["Message-ID"] = make_msgid(idstring=message_key, domain=domain)
    message["X-OpenRouter-Spend-Batch"] = message_key
    message.set_content(text)
    return message


def send_email(server: SmtpServer, message: EmailMessage) -> None:
    """Send one message; raises ChannelError (without credentials) on any failure."""
    secrets = [server.password]
    try:
        if server.use_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout_seconds,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=server.timeout_seconds)
        with client:
            if server.starttls:
                client.starttls(context=ssl.create_default_context())
            if server.user and server.password:
                client.login(server.user, server.password)
            refused = client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        detail = scrub(str(exc), secrets)[:200]
        raise ChannelError(f"SMTP {server.host}:{server.port} failed: {type(exc).__name__}: {detail}") from None
    if refused:
        raise ChannelError(f"SMTP {server.host}:{server.port} refused {', '.join(sorted(refused))}")


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
