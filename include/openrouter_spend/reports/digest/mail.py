"""Optional e-mail of the digest to finance, sent through the alerting SMTP channel (openrouter_spend.alerts.channels).

Recipients come from `OPENROUTER_SPEND_DIGEST_EMAIL_TO` (comma-separated; unset = no e-mail). The server is
the alert channel's: the smtp provider's `SmtpHook` on `OPENROUTER_SPEND_SMTP_HOST/_PORT/_USER/_PASSWORD/
_FROM/_STARTTLS/_SSL`, else on the Airflow connection `smtp_default` (the defaults of `channels.email` in
include/config/rules.yaml), so the digest and the alerts share one SMTP configuration and one
secret-scrubbing sender.

The message is the HTML digest with its charts as inline (cid:) images, since mail clients block data: URIs,
the Markdown as the plain-text part, and the CSV files attached. A ledger under `digests/.sent/` records the
sha256 of what was sent to whom, so a retried task does not send the same digest twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import date
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

log = logging.getLogger(__name__)

RECIPIENTS_ENV = "OPENROUTER_SPEND_DIGEST_EMAIL_TO"
SMTP_CONNECTION_ID = "smtp_default"
SMTP_ENV_PREFIX = "OPENROUTER_SPEND_SMTP"
DEFAULT_SENDER = "openrouter-spend@localhost"
TIMEOUT_SECONDS = 30.0
_DATA_URI_IMAGE = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)" data-chart="([^"]+)"')


class DigestEmailError(RuntimeError):
    """Sending the digest failed; the message names the server and the cause, never a secret."""


def recipients() -> list[str]:
    """The configured finance recipients (empty = e-mail disabled)."""
    return [address.strip() for address in os.environ.get(RECIPIENTS_ENV, "").split(",") if address.strip()]


def build_message(folder: Path, subject: str, sender: str, to: list[str]) -> EmailMessage:
    """The e-mail for one digest folder: HTML with inline charts, Markdown as text, CSV files attached."""
    html = (folder / "digest.html").read_text()
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(idstring=f"digest-{folder.name}", domain="openrouter-spend.local")
    message.set_content((folder / "digest.md").read_text())
    images: list[tuple[str, str]] = []

    def to_cid(match: re.Match) -> str:
        cid = make_msgid(idstring=match.group(2), domain="openrouter-spend.local")
        images.append((cid, match.group(2)))
        return f'src="cid:{cid[1:-1]}" alt="{match.group(1)}" data-chart="{match.group(2)}"'

    message.add_alternative(_DATA_URI_IMAGE.sub(to_cid, html), subtype="html")
    html_part = message.get_payload()[1]
    for cid, name in images:
        html_part.add_related((folder / "charts" / name).read_bytes(), maintype="image", subtype="png", cid=cid,
                              filename=name)
    for csv_path in sorted(folder.glob("*.csv")):
        message.add_attachment(csv_path.read_bytes(), maintype="text", subtype="csv", filename=csv_path.name)
    return message


def _ledger(folder: Path) -> Path:
    return folder.parent / ".sent" / f"{folder.name}.json"


def send_digest(folder: Path, day: date, subject: str) -> dict:
    """E-mail the digest in `folder` to the configured recipients, unless this exact digest already went to them."""
    from openrouter_spend.alerts.channels import ChannelError, send_email, smtp_hook

    to = recipients()
    if not to:
        return {"status": "not_configured"}
    hook = smtp_hook(SMTP_CONNECTION_ID, SMTP_ENV_PREFIX, DEFAULT_SENDER, TIMEOUT_SECONDS)
    if hook is None:
        raise DigestEmailError(f"{RECIPIENTS_ENV} is set but no SMTP server is configured "
                               f"({SMTP_ENV_PREFIX}_HOST or the Airflow connection {SMTP_CONNECTION_ID})")
    record = {"day": day.isoformat(),
              "digest_sha256": hashlib.sha256((folder / "digest.html").read_bytes()).hexdigest(),
              "recipients": sorted(to)}
    ledger = _ledger(folder)
    if ledger.exists() and json.loads(ledger.read_text()) == record:
        return {"status": "already_sent", "recipients": len(to)}
    try:
        send_email(hook, build_message(folder, subject, hook.from_email, to))
    except ChannelError as exc:
        raise DigestEmailError(f"e-mailing the {day} digest to {len(to)} recipient(s) failed: {exc}") from exc
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_text(json.dumps(record, indent=2) + "\n")
    log.info("e-mailed the %s digest to %d recipient(s) via %s:%s", day, len(to), hook.host, hook.port)
    return {"status": "sent", "recipients": len(to)}
