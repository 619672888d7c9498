"""Channel plumbing: the providers' hooks, where their secrets come from, that they never show, and the daily
file's exactly-once append."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import yaml
from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from openrouter_spend.alerts import channels

PASSWORD = "correct-horse-battery-staple"
SLACK_SECRET = "T0SECRET/B0SECRET/xoxbSlackTokenThatMustNotLeak"


def test_scrub_removes_secrets_and_their_url_quoted_forms():
    url = "https://hooks.slack.com/services/T0/B0/s3cr3t token"
    text = f"POST {url} failed; quoted {url.replace(' ', '%20')}; again {url.replace('/', '%2F').replace(':', '%3A').replace(' ', '%20')}"
    assert channels.scrub(text, [url, None, ""]) == "POST *** failed; quoted ***; again ***"


def _webhook_url(hook) -> str:
    return hook.get_conn().url


def test_the_webhook_comes_from_the_environment_first_then_the_airflow_connection(monkeypatch):
    monkeypatch.delenv("ROUTE_WEBHOOK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_OPENROUTER_SPEND_SLACK_TEST", raising=False)
    assert channels.slack_hook("openrouter_spend_slack_test", "ROUTE_WEBHOOK", 5) is None
    monkeypatch.setenv("AIRFLOW_CONN_OPENROUTER_SPEND_SLACK_TEST",
                       json.dumps({"conn_type": "slackwebhook", "password": "T1/B2/abc"}))
    assert _webhook_url(channels.slack_hook("openrouter_spend_slack_test", "ROUTE_WEBHOOK", 5)) == \
        "https://hooks.slack.com/services/T1/B2/abc"  # the Slack provider's token form
    monkeypatch.setenv("AIRFLOW_CONN_OPENROUTER_SPEND_SLACK_TEST",
                       json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9/hook/xyz"}))
    assert _webhook_url(channels.slack_hook("openrouter_spend_slack_test", "ROUTE_WEBHOOK", 5)) == \
        "http://127.0.0.1:9/hook/xyz"
    monkeypatch.setenv("ROUTE_WEBHOOK", " https://example.invalid/from-env ")
    hook = channels.slack_hook("openrouter_spend_slack_test", "ROUTE_WEBHOOK", 2.5)
    assert isinstance(hook, SlackWebhookHook)
    assert _webhook_url(hook) == "https://example.invalid/from-env"
    assert hook.get_conn().timeout == 3  # rules.yaml's slack.timeout_seconds, rounded up


def test_smtp_settings_from_the_environment_or_the_smtp_providers_connection_and_never_a_visible_password(
        monkeypatch):
    for key in ("HOST", "PORT", "USER", "PASSWORD", "FROM", "STARTTLS", "SSL"):
        monkeypatch.delenv(f"TEST_SMTP_{key}", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_TEST_SMTP", raising=False)
    assert channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5) is None

    def settings(hook):
        return hook.host, hook.port, hook.use_ssl, hook.smtp_starttls, hook.from_email, hook.timeout

    monkeypatch.setenv("AIRFLOW_CONN_TEST_SMTP", json.dumps({
        "conn_type": "smtp", "host": "mail.example.com", "login": "bot", "password": PASSWORD,
        "extra": {"from_email": "bot@example.com"}}))
    hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert isinstance(hook, SmtpHook)
    # The provider's default is SSL; STARTTLS inside an SSL session is not attempted.
    assert settings(hook) == ("mail.example.com", 465, True, False, "bot@example.com", 5)
    assert (hook.smtp_user, hook.smtp_password) == ("bot", PASSWORD)
    assert PASSWORD not in repr(hook) and PASSWORD not in str(hook)

    monkeypatch.setenv("AIRFLOW_CONN_TEST_SMTP", json.dumps({
        "conn_type": "smtp", "host": "mail.example.com", "port": 587,
        "extra": {"disable_ssl": True, "timeout": 60}}))
    hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert settings(hook) == ("mail.example.com", 587, False, True, "alerts@example.com", 60)

    monkeypatch.setenv("TEST_SMTP_HOST", "relay.internal")
    monkeypatch.setenv("TEST_SMTP_PORT", "2525")
    hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert settings(hook) == ("relay.internal", 2525, False, False, "alerts@example.com", 5)
    monkeypatch.setenv("TEST_SMTP_PORT", "587")
    monkeypatch.setenv("TEST_SMTP_FROM", "relay@example.com")
    hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
    assert settings(hook) == ("relay.internal", 587, False, True, "relay@example.com", 5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SlackStandIn:
    """A local incoming-webhook endpoint in a thread: keeps every POST, answers `status` with `reply` (or the path)."""

    def __init__(self, status: int = 200, reply: bytes = b"ok"):
        self.requests: list[dict] = []
        outer = self
        self.status, self.reply = status, reply

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"path": self.path, "content_type": self.headers["Content-Type"],
                                       "payload": json.loads(body)})
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(outer.reply or f"no_service {self.path}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/{route}/{SLACK_SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack_stand_in():
    server = SlackStandIn()
    yield server
    server.close()


def test_a_slack_message_goes_through_the_providers_hook_and_its_url_stays_out_of_logs_and_errors(
        slack_stand_in, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ROUTE_WEBHOOK", slack_stand_in.url("finops"))
    hook = channels.slack_hook(None, "ROUTE_WEBHOOK", 5)
    payload = {"text": "openrouter-spend: 1 alert(s)", "blocks": [{"type": "section", "text": {
        "type": "mrkdwn", "text": "*[CRITICAL] Runaway usage*"}}]}
    channels.send_slack(hook, payload)
    assert slack_stand_in.requests == [{"path": f"/services/finops/{SLACK_SECRET}",
                                        "content_type": "application/json;charset=utf-8", "payload": payload}]

    slack_stand_in.status, slack_stand_in.reply = 404, b""  # the stand-in echoes the path, token included
    with pytest.raises(channels.ChannelError) as refused:
        channels.send_slack(hook, payload)
    assert str(refused.value) == "Slack webhook answered HTTP 404: no_service /***"

    port = _free_port()  # nothing listens there
    monkeypatch.setenv("ROUTE_WEBHOOK", f"http://127.0.0.1:{port}/services/finops/{SLACK_SECRET}")
    with pytest.raises(channels.ChannelError) as unreachable:
        channels.send_slack(channels.slack_hook(None, "ROUTE_WEBHOOK", 5), payload)
    assert str(unreachable.value) == "Slack webhook unreachable: ConnectionRefusedError"

    assert len(slack_stand_in.requests) == 2
    assert caplog.records, "the hook logged nothing at DEBUG: this test would not see a leak"
    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (SLACK_SECRET, SLACK_SECRET.split("/")[-1]):
        assert secret not in logged + str(refused.value) + str(unreachable.value)


def _smtp_server(received: list, password: str = PASSWORD):
    """An aiosmtpd server on a free port that keeps accepted messages and checks the password."""
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("aiosmtpd is not installed (pip install aiosmtpd==1.4.6); CI fails instead of skipping")

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=auth_data.password == password.encode())

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    return controller, port


def _smtp_environment(monkeypatch, prefix: str, port: int, password: str) -> None:
    for key, value in {"HOST": "127.0.0.1", "PORT": str(port), "USER": "bot", "PASSWORD": password,
                       "FROM": "bot@example.com", "STARTTLS": "false", "SSL": "false"}.items():
        monkeypatch.setenv(f"{prefix}_{key}", value)


def test_an_email_goes_through_the_smtp_hook_and_a_refused_login_names_no_password(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    received: list = []
    controller, port = _smtp_server(received)
    try:
        _smtp_environment(monkeypatch, "TEST_SMTP", port, PASSWORD)
        hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 5)
        subject = "[openrouter-spend] 2 alert(s) for 2026-11-22 (1 critical): Frank Lindqvist, Grace Oyelaran"
        channels.send_email(hook, channels.build_email(hook.from_email, ["a@example.com", "b@example.com"], subject,
                                                       "line one\nline two", "batch123"))
        _smtp_environment(monkeypatch, "TEST_SMTP", port, "wrong-" + PASSWORD)
        wrong = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 2)
        with pytest.raises(channels.ChannelError) as refused:
            channels.send_email(wrong, channels.build_email(wrong.from_email, ["a@example.com"], "s", "t", "batch124"))
    finally:
        controller.stop()

    assert len(received) == 1
    message = received[0]
    assert message["Subject"] == subject  # one line, no folding artefacts
    assert message["From"] == "bot@example.com" and message["To"] == "a@example.com, b@example.com"
    assert message["X-OpenRouter-Spend-Batch"] == "batch123" and "batch123" in message["Message-ID"]
    assert message.get_content().replace("\r\n", "\n") == "line one\nline two\n"
    # aiosmtpd stalls a refused login until the client gives up; either way the password stays out.
    assert str(refused.value).startswith(f"SMTP 127.0.0.1:{port} failed: SMTP")
    assert PASSWORD not in str(refused.value) + caplog.text


def test_an_unreachable_smtp_server_is_a_clear_error_without_the_password(monkeypatch):
    port = _free_port()  # nothing listens there
    _smtp_environment(monkeypatch, "TEST_SMTP", port, PASSWORD)
    hook = channels.smtp_hook("test_smtp", "TEST_SMTP", "alerts@example.com", 2)
    with pytest.raises(channels.ChannelError) as unreachable:
        channels.send_email(hook, channels.build_email(hook.from_email, ["a@example.com"], "s", "t", "batch1"))
    assert str(unreachable.value).startswith(f"SMTP 127.0.0.1:{port} failed: ConnectionRefusedError")
    assert PASSWORD not in str(unreachable.value)


def test_the_daily_file_appends_each_delivery_once(tmp_path):
    path = tmp_path / "alerts" / "2026-11-22.jsonl"
    first = [{"delivery_id": "d1", "alert_id": "a1"}, {"delivery_id": "d2", "alert_id": "a2"}]
    assert channels.append_jsonl(path, first) == 2
    assert channels.append_jsonl(path, first + [{"delivery_id": "d3", "alert_id": "a3"}]) == 1
    assert [json.loads(line)["delivery_id"] for line in path.read_text().splitlines()] == ["d1", "d2", "d3"]


class PermanentError(Exception):
    """Stands for an error the DAG's retry policy fails at once (a revoked key)."""


def _failure_context(task_id: str, exception: Exception, run_id: str = "scheduled__2026-11-22T00:00:00+00:00"):
    """What Airflow hands a task's on_failure_callback, reduced to what the notifier reads."""
    policy = ExceptionRetryPolicy(rules=[RetryRule(exception=[PermanentError], action=RetryAction.FAIL)])
    ti = SimpleNamespace(dag_id="openrouter_spend_daily", task_id=task_id, run_id=run_id, try_number=1,
                         map_index=-1, log_url=None)
    return {"ti": ti, "task": SimpleNamespace(retry_policy=policy, retries=3), "exception": exception,
            "run_id": run_id}


def test_a_failed_task_pages_the_route_through_the_providers_notifiers_once_per_run_for_a_permanent_error(
        slack_stand_in, spend_home, monkeypatch, caplog, capsys):
    from openrouter_spend.alerts import notifications
    from openrouter_spend.config import settings

    caplog.set_level(logging.DEBUG)
    received: list = []
    controller, port = _smtp_server(received)
    try:
        monkeypatch.setenv("OPENROUTER_SPEND_SLACK_WEBHOOK_DATA_ENG", slack_stand_in.url("data-eng"))
        _smtp_environment(monkeypatch, "OPENROUTER_SPEND_SMTP", port, PASSWORD)
        refused = PermanentError("401 No auth credentials found")
        notifications.PipelineFailureNotifier().notify(_failure_context("fetch_activity", refused))
        again = notifications.notify_pipeline_failure(_failure_context("fetch_credits", refused))
        next_run = notifications.notify_pipeline_failure(
            _failure_context("fetch_activity", refused, run_id="scheduled__2026-11-23T00:00:00+00:00"))
        timeout = TimeoutError("read timed out after {{ 7 * 7 }} s")  # error text is data, never a template
        transient = [notifications.notify_pipeline_failure(_failure_context(task_id, timeout))
                     for task_id in ("fetch_activity", "fetch_credits")]
    finally:
        controller.stop()

    assert again == {"route": "already paged for this run"}
    assert next_run == {"slack": "sent", "email": "sent"}
    assert transient == [{"slack": "sent", "email": "sent"}] * 2  # a transient error is no single cause
    pages = [request["payload"] for request in slack_stand_in.requests]
    assert [page["text"] for page in pages] == [
        "[openrouter-spend] pipeline task fetch_activity failed in openrouter_spend_daily",
        "[openrouter-spend] pipeline task fetch_activity failed in openrouter_spend_daily",
        "[openrouter-spend] pipeline task fetch_activity failed in openrouter_spend_daily",
        "[openrouter-spend] pipeline task fetch_credits failed in openrouter_spend_daily"]
    assert "Error: PermanentError: 401 No auth credentials found" in pages[0]["blocks"][0]["text"]["text"]
    assert "Error: TimeoutError: read timed out after {{ 7 * 7 }} s" in pages[3]["blocks"][0]["text"]["text"]
    assert all(f"/services/data-eng/{SLACK_SECRET}" == request["path"] for request in slack_stand_in.requests)

    route = yaml.safe_load((settings.config_dir() / "rules.yaml").read_text())["routes"]["data-engineering"]
    assert len(received) == 4 and all(message["To"] == ", ".join(route["email"]["to"]) for message in received)
    first = received[0]
    assert first["Subject"] == pages[0]["text"] and first["From"] == "bot@example.com"
    body = first.get_body(("html",)).get_content()
    assert "Task: fetch_activity (try 1)" in body and "PermanentError: 401 No auth credentials found" in body
    assert "{{ 7 * 7 }}" in received[3].get_body(("html",)).get_content()
    # One Message-ID per task and run, so a resent page can be recognised.
    assert len({message["Message-ID"] for message in received}) == 4

    logged = caplog.text + "".join(capsys.readouterr())
    for secret in (SLACK_SECRET, PASSWORD):
        assert secret not in logged


def test_a_failure_page_that_cannot_be_delivered_is_reported_without_secrets_and_never_raises(
        spend_home, monkeypatch):
    from openrouter_spend.alerts import notifications

    monkeypatch.setenv("OPENROUTER_SPEND_SLACK_WEBHOOK_DATA_ENG",
                       f"http://127.0.0.1:{_free_port()}/services/data-eng/{SLACK_SECRET}")
    smtp_port = _free_port()
    _smtp_environment(monkeypatch, "OPENROUTER_SPEND_SMTP", smtp_port, PASSWORD)
    outcome = notifications.notify_pipeline_failure(_failure_context("fetch_activity", RuntimeError("boom")))
    assert outcome == {
        "slack": "failed: Slack webhook unreachable: ConnectionRefusedError",
        "email": f"failed: SMTP 127.0.0.1:{smtp_port} failed: ConnectionRefusedError: "
                 "[Errno 111] Connection refused"}
