"""Channel plumbing: where secrets come from, that they never show, and the daily file's exactly-once append."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket

import pytest

from openrouter_spend.alerts import channels

PASSWORD = "correct-horse-battery-staple"


def test_scrub_removes_secrets_and_their_url_quoted_forms():
    url = "https://hooks.slack.com/services/T0/B0/s3cr3t token"
    text = f"POST {url} failed; quoted {url.replace(' ', '%20')}; again {url.replace('/', '%2F').replace(':', '%3A').replace(' ', '%20')}"
    assert channels.scrub(text, [url, None, ""]) == "POST *** failed; quoted ***; again ***"


def test_the_webhook_url_comes_from_the_environment_first_then_the_airflow_connection(monkeypatch):
    monkeypatch.delenv("ROUTE_WEBHOOK", raising=False)
    assert channels.slack_webhook_url("openrouter_spend_slack_test", "ROUTE_WEBHOOK") is None
    monkeypatch.setenv("AIRFLOW_CONN_OPENROUTER_SPEND_SLACK_TEST",
                       json.dumps({"conn_type": "slackwebhook", "password": "T1/B2/abc"}))
    assert channels.slack_webhook_url("openrouter_spend_slack_test", "ROUTE_WEBHOOK") == \
        "https://hooks.slack.com/services/T1/B2/abc"
    monkeypatch.setenv("AIRFLOW_CONN_OPENROUTER_SPEND_SLACK_TEST",
                       json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/hook/xyz"}))
    assert channels.slack_webhook_url("openrouter_spend_slack_test", "ROUTE_WEBHOOK") == "http://127.0.0.1:9/hook/xyz"
    monkeypatch.setenv("ROUTE_WEBHOOK", " https://example.invalid/from-env ")
    assert channels.slack_webhook_url("openrouter_spend_slack_test", "ROUTE_WEBHOOK") == \
        "https://example.invalid/from-env"


def test_smtp_settings_from_the_environment_or_the_smtp_providers_connection_and_never_a_visible_password(
        monkeypatch):
    for key in ("HOST", "PORT", "USER", "PASSWORD", "FROM", "STARTTLS", "SSL"):
        monkeypatch.delenv(f"TEST_SMTP_{key}", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_TEST_SMTP", raising=False)
    assert channels.smtp_server("test_smtp", "TEST_SMTP", "alerts@example.com", 5) is None

    monkeypatch.setenv("AIRFLOW_CONN_TEST_SMTP", json.dumps({
        "conn_type": "smtp", "host": "mail.example.com", "login": "bot", "password": PASSWORD,
        "extra": {"from_email": "bot@example.com"}}))
    server = channels.smtp_server("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert (server.host, server.port, server.use_ssl, server.starttls, server.from_address) == \
        ("mail.example.com", 465, True, False, "bot@example.com")  # the provider's default: SSL
    assert PASSWORD not in repr(server) and PASSWORD not in str(server)

    monkeypatch.setenv("AIRFLOW_CONN_TEST_SMTP", json.dumps({
        "conn_type": "smtp", "host": "mail.example.com", "port": 587, "extra": {"disable_ssl": True}}))
    server = channels.smtp_server("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert (server.port, server.use_ssl, server.starttls, server.from_address) == \
        (587, False, True, "alerts@example.com")

    monkeypatch.setenv("TEST_SMTP_HOST", "relay.internal")
    monkeypatch.setenv("TEST_SMTP_PORT", "2525")
    server = channels.smtp_server("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert (server.host, server.port, server.use_ssl, server.starttls) == ("relay.internal", 2525, False, False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_email_goes_through_a_real_smtp_server_and_a_refused_login_names_no_password():
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("aiosmtpd is not installed (pip install aiosmtpd==1.4.6); CI fails instead of skipping")

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=auth_data.password == PASSWORD.encode())

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        server = channels.SmtpServer("127.0.0.1", port, "bot", PASSWORD, "bot@example.com", False, False, 5)
        subject = "[openrouter-spend] 2 alert(s) for 2026-11-22 (1 critical): Frank Lindqvist, Grace Oyelaran"
        channels.send_email(server, channels.build_email(server, ["a@example.com", "b@example.com"], subject,
                                                         "line one\nline two", "batch123"))
        wrong = channels.SmtpServer("127.0.0.1", port, "bot", "wrong-" + PASSWORD, "bot@example.com", False,
                                    False, 2)
        with pytest.raises(channels.ChannelError) as refused:
            channels.send_email(wrong, channels.build_email(wrong, ["a@example.com"], "s", "t", "batch124"))
    finally:
        controller.stop()

    assert len(received) == 1
    message = received[0]
    assert message["Subject"] == subject  # one line, no folding artefacts
    assert message["To"] == "a@example.com, b@example.com"
    assert message["X-OpenRouter-Spend-Batch"] == "batch123" and "batch123" in message["Message-ID"]
    assert message.get_content().replace("\r\n", "\n") == "line one\nline two\n"
    # aiosmtpd stalls a refused login until the client gives up; either way the password stays out.
    assert str(refused.value).startswith(f"SMTP 127.0.0.1:{port} failed: SMTP")
    assert PASSWORD not in str(refused.value)


def test_the_daily_file_appends_each_delivery_once(tmp_path):
    path = tmp_path / "alerts" / "2026-11-22.jsonl"
    first = [{"delivery_id": "d1", "alert_id": "a1"}, {"delivery_id": "d2", "alert_id": "a2"}]
    assert channels.append_jsonl(path, first) == 2
    assert channels.append_jsonl(path, first + [{"delivery_id": "d3", "alert_id": "a3"}]) == 1
    assert [json.loads(line)["delivery_id"] for line in path.read_text().splitlines()] == ["d1", "d2", "d3"]
