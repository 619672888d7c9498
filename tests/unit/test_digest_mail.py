"""The finance e-mail goes to a real SMTP server on a socket: HTML with inline charts, CSVs attached, sent once."""

from __future__ import annotations

import base64
import email
import socketserver
import threading
from datetime import date
from email import policy
from pathlib import Path

import pytest

from openrouter_spend.reports.digest import mail

DAY = date(2026, 3, 2)
PASSWORD = "smtp-secret-for-tests"


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive messages like a real server."""

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        server = self.server
        self.reply("220 sink ESMTP")
        envelope: dict = {"rcpt": []}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "AUTH":
                credentials = base64.b64decode(command.split()[2]).split(b"\0")
                server.logins.append((credentials[1].decode(), credentials[2].decode()))
                self.reply("235 ok")
            elif verb == "MAIL":
                envelope = {"from": command, "rcpt": []}
                self.reply("250 ok")
            elif verb == "RCPT":
                envelope["rcpt"].append(command.split(":", 1)[1].strip("<> "))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go on")
                data = bytearray()
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n"):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                server.messages.append((envelope["rcpt"], bytes(data)))
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp_sink(monkeypatch):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    server.messages, server.logins = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("STARTTLS", "SSL", "FROM"):
        monkeypatch.delenv(f"OPENROUTER_SPEND_SMTP_{name}", raising=False)
    monkeypatch.setenv("OPENROUTER_SPEND_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("OPENROUTER_SPEND_SMTP_PORT", str(server.server_address[1]))
    monkeypatch.setenv("OPENROUTER_SPEND_SMTP_USER", "digest-bot")
    monkeypatch.setenv("OPENROUTER_SPEND_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", "finance@example.com, cfo@example.com")
    yield server
    server.shutdown()
    server.server_close()


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def digest_folder(tmp_path: Path) -> Path:
    """A digest folder shaped like write_day's: HTML with data-URI charts, Markdown, CSVs, PNGs."""
    folder = tmp_path / "digests" / DAY.isoformat()
    (folder / "charts").mkdir(parents=True)
    encoded = base64.b64encode(PNG).decode()
    images = "".join(f'<figure><img src="data:image/png;base64,{encoded}" alt="chart {name}" data-chart="{name}">'
                     "</figure>" for name in ("spend_by_project.png", "burn_and_runway.png"))
    (folder / "digest.html").write_text(f"<!DOCTYPE html><html><body><h1>Spend $21.00</h1>{images}</body></html>")
    (folder / "digest.md").write_text("# Spend $21.00\n")
    (folder / "spend_by_owner.csv").write_text("usage_date,project,spend_usd\n2026-03-02,alpha,12\n")
    (folder / "alerts.csv").write_text("alert_id,rule_id\n")
    for name in ("spend_by_project.png", "burn_and_runway.png"):
        (folder / "charts" / name).write_bytes(PNG)
    return folder


def test_sends_html_with_inline_charts_and_csv_attachments_once(smtp_sink, tmp_path):
    folder = digest_folder(tmp_path)
    result = mail.send_digest(folder, DAY, "OpenRouter spend 2026-03-02: $21.00")
    assert result == {"status": "sent", "recipients": 2}
    assert smtp_sink.logins == [("digest-bot", PASSWORD)]
    (recipients, raw), = smtp_sink.messages
    assert recipients == ["finance@example.com", "cfo@example.com"]
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
    assert message["Subject"] == "OpenRouter spend 2026-03-02: $21.00"
    assert message.get_body(("plain",)).get_content() == "# Spend $21.00\n"
    html = message.get_body(("html",)).get_content()
    assert "data:image" not in html and html.count('src="cid:') == 2
    related = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert sorted(part["Content-ID"].strip("<>") for part in related) == sorted(
        piece.split('"', 1)[0] for piece in html.split('src="cid:')[1:])
    assert all(part.get_content() == PNG for part in related)
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert set(attachments) == {"alerts.csv", "spend_by_owner.csv"}
    assert "alpha,12" in attachments["spend_by_owner.csv"]

    assert mail.send_digest(folder, DAY, "again") == {"status": "already_sent", "recipients": 2}
    assert len(smtp_sink.messages) == 1
    ledger = (folder.parent / ".sent" / f"{DAY.isoformat()}.json").read_text()
    assert PASSWORD not in ledger and "finance@example.com" in ledger

    (folder / "digest.html").write_text((folder / "digest.html").read_text().replace("$21.00", "$22.00"))
    assert mail.send_digest(folder, DAY, "corrected")["status"] == "sent"
    assert len(smtp_sink.messages) == 2


def test_not_configured_sends_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", raising=False)
    assert mail.send_digest(digest_folder(tmp_path), DAY, "x") == {"status": "not_configured"}


def test_unreachable_server_error_names_the_server_not_the_password(smtp_sink, tmp_path, monkeypatch):
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as closed:
        port = closed.server_address[1]
    monkeypatch.setenv("OPENROUTER_SPEND_SMTP_PORT", str(port))
    with pytest.raises(mail.DigestEmailError) as raised:
        mail.send_digest(digest_folder(tmp_path), DAY, "x")
    assert f"127.0.0.1:{port}" in str(raised.value) and PASSWORD not in str(raised.value)
    assert not (tmp_path / "digests" / ".sent").exists()


def test_recipients_without_a_server_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", "finance@example.com")
    monkeypatch.delenv("OPENROUTER_SPEND_SMTP_HOST", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    with pytest.raises(mail.DigestEmailError, match="OPENROUTER_SPEND_SMTP_HOST"):
        mail.send_digest(digest_folder(tmp_path), DAY, "x")
