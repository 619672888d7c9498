"""The weekly savings notice: each owner's top three, once per ISO week, through the file, Slack and a real SMTP
server; a rerun or a later day of the week sends nothing twice and retries a failure with the first text."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from marts_fixtures import DAY
from savings_fixtures import OPPORTUNITIES, opportunity, replace_opportunities, savings_warehouse
from test_rules_channels import PASSWORD, SlackStandIn, _smtp_environment, _smtp_server

from openrouter_spend.alerts import AlertDeliveryFailed, savings_notices
from openrouter_spend.config import settings
from openrouter_spend.context import RunContext
from openrouter_spend.warehouse import connect

ROUTES = """routes:
  default:
    min_severity: warning
    email:
      to: [budget_owner, finops@example.com]
    slack:
      env_var: SAVINGS_TEST_SLACK_DEFAULT

  data-engineering:
    min_severity: warning
    email:
      to: [data-engineering@example.com]

  ann:
    budget_owners: [Ann Owner]
    min_severity: info
    email:
      to: [budget_owner]
    slack:
      env_var: SAVINGS_TEST_SLACK_ANN

"""


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A warehouse with OPPORTUNITIES on DAY as the live warehouse of OPENROUTER_SPEND_HOME; Ann's route takes
    info notices by Slack (a local stand-in) and e-mail (a real SMTP server), the default route only warnings."""
    warehouse = savings_warehouse(tmp_path)
    rules = (settings.PROJECT_ROOT / "include" / "config" / "rules.yaml").read_text()
    head, rest = rules.split("routes:", 1)
    (warehouse.config_dir / "rules.yaml").write_text(head + ROUTES + "# Channel" + rest.split("# Channel", 1)[1])
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    slack = SlackStandIn()
    monkeypatch.setenv("SAVINGS_TEST_SLACK_ANN", slack.url("ann"))
    monkeypatch.setenv("SAVINGS_TEST_SLACK_DEFAULT", slack.url("default"))
    received: list = []
    controller, port = _smtp_server(received)
    _smtp_environment(monkeypatch, "OPENROUTER_SPEND_SMTP", port, PASSWORD)
    yield warehouse, slack, received
    controller.stop()
    slack.close()


def _emit(warehouse, day, run_id):
    return savings_notices.emit_week(day, run_id, config_dir=warehouse.config_dir, today=day + timedelta(days=1))


def _ledger(warehouse) -> list[dict]:
    return warehouse.rows("select owner, channel, target, status, attempts, week_start, usage_date, "
                          "opportunities, monthly_saving_usd, last_error from meta.savings_notices "
                          "order by owner, channel")


def _file_lines(day) -> list[dict]:
    path = settings.paths().alerts / f"savings-{day.isoformat()}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_owner_gets_its_top_three_once_a_week_on_its_route(world):
    warehouse, slack, received = world
    summary = _emit(warehouse, DAY, "run-1")
    assert {k: summary[k] for k in ("status", "week_start", "notices", "deliveries", "sent", "failed", "skipped")} \
        == {"status": "planned", "week_start": "2026-03-02", "notices": 3, "deliveries": 5, "sent": 5, "failed": 0,
            "skipped": 0}
    assert [(r["owner"], r["channel"], r["target"], r["status"], r["attempts"], r["opportunities"],
             r["monthly_saving_usd"]) for r in _ledger(warehouse)] == [
        ("Ann Owner", "email", "email:ann@example.com", "sent", 1, 4, 58.5),
        ("Ann Owner", "file", "alerts/savings-2026-03-02.jsonl", "sent", 1, 4, 58.5),
        ("Ann Owner", "slack", "slack:ann", "sent", 1, 4, 58.5),
        ("Bob Owner", "file", "alerts/savings-2026-03-02.jsonl", "sent", 1, 2, 28.0),
        ("project gamma", "file", "alerts/savings-2026-03-02.jsonl", "sent", 1, 1, 8.0)]

    lines = {line["owner"]: line for line in _file_lines(DAY)}
    ann = lines["Ann Owner"]
    assert (ann["kind"], ann["severity"], ann["route"], ann["projects"]) == ("savings_notice", "info", "ann", ["alpha"])
    assert [(row["label"], row["monthly_saving_usd"], row["saving"]) for row in ann["top"]] == [
        ("Prompt caching", 40.0, "up to $40.00 a month"), ("Cheaper provider", 12.0, "about $12.00 a month "
                                                                                    "($9.00 to $15.00)"),
        ("batch_discount", 5.0, "$5.00 a month")]
    assert ann["title"] == ("[INFO] Savings for Ann Owner: up to $58.50 a month from 4 opportunities "
                            "(week of 2026-03-02)")
    assert "\n3. batch_discount, alpha: $5.00 a month. See the batch_discount rows" in ann["message"]
    assert "\nAnd 1 more in marts.rpt_savings_opportunities.\n" in ann["message"]
    assert ann["message"].endswith("where usage_date = '2026-03-02' and project in ('alpha') "
                                   "order by monthly_saving_usd desc")
    assert [row["monthly_saving_usd"] for row in lines["Bob Owner"]["top"]] == [25.0, 3.0]
    gamma = lines["project gamma"]
    assert (gamma["budget_owner"], gamma["route"], [r["label"] for r in gamma["top"]]) == \
        (None, "default", ["Standard instead of premium"])
    assert "contact" not in ann

    (post,) = slack.requests
    assert post["path"].startswith("/services/ann/")
    assert post["payload"]["text"] == f"*{ann['title']}*"
    assert "1. *Prompt caching*, alpha: up to $40.00 a month." in post["payload"]["blocks"][0]["text"]["text"]
    (mail,) = received
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == ("OpenRouter savings for Ann Owner: up to $58.50 a month from 4 opportunities "
                               "(week of 2026-03-02)")
    assert mail.get_content().replace("\r\n", "\n").strip() == ann["message"]

    # A rerun of the day, and a later day of the same week, send nothing again.
    for day, run_id in ((DAY, "run-2"), (DAY + timedelta(days=2), "run-3")):
        again = _emit(warehouse, day, run_id)
        assert (again["status"], again["deliveries"], again["sent"]) == ("retried", 0, 0)
    assert len(slack.requests) == 1 and len(received) == 1 and len(_file_lines(DAY)) == 3
    assert [r["attempts"] for r in _ledger(warehouse)] == [1] * 5


def test_the_next_week_gets_its_own_notice_from_its_first_emitted_day(world):
    warehouse, slack, received = world
    _emit(warehouse, DAY, "run-1")
    tuesday = DAY + timedelta(days=8)  # Monday DAY + 7 emitted nothing (its emit was skipped)
    replace_opportunities(warehouse.path, [opportunity("prompt_caching", "alpha", "Ann Owner", 7.0, "upper_bound")],
                          day=tuesday)
    summary = _emit(warehouse, tuesday, "run-9")
    assert (summary["status"], summary["week_start"], summary["notices"], summary["sent"]) == \
        ("planned", "2026-03-09", 1, 3)
    (line,) = _file_lines(tuesday)
    assert line["title"] == "[INFO] Savings for Ann Owner: up to $7.00 a month from 1 opportunity (week of 2026-03-09)"
    # The Monday of that week, backfilled later, belongs to the week already notified.
    replace_opportunities(warehouse.path, OPPORTUNITIES, day=DAY + timedelta(days=7))
    assert _emit(warehouse, DAY + timedelta(days=7), "run-10")["deliveries"] == 0
    assert len(slack.requests) == 2 and len(received) == 2
    assert sorted({(r["week_start"], r["usage_date"]) for r in _ledger(warehouse)}) == [
        (DAY, DAY), (DAY + timedelta(days=7), tuesday)]


def test_a_failed_delivery_is_retried_with_the_text_first_planned_and_sent_once(world):
    warehouse, slack, received = world
    slack.status, slack.reply = 500, b"server_error"
    with pytest.raises(AlertDeliveryFailed, match=r"1 of 5 savings-notice deliveries for the week of 2026-03-02 "
                                                  r"failed \(they will be retried\): Slack webhook answered HTTP 500"):
        _emit(warehouse, DAY, "run-1")
    failed = [r for r in _ledger(warehouse) if r["status"] != "sent"]
    assert [(r["owner"], r["channel"], r["status"], r["attempts"]) for r in failed] == \
        [("Ann Owner", "slack", "failed", 1)]
    # The marts change before the retry: the notice keeps the figures it was planned with.
    replace_opportunities(warehouse.path, [opportunity("prompt_caching", "alpha", "Ann Owner", 99.0, "upper_bound")])
    slack.status, slack.reply = 200, b"ok"
    retry = _emit(warehouse, DAY, "run-2")
    assert (retry["status"], retry["deliveries"], retry["sent"]) == ("retried", 1, 1)
    assert len(slack.requests) == 2 and len(received) == 1
    assert "up to $58.50 a month from 4 opportunities" in slack.requests[-1]["payload"]["text"]
    assert [(r["channel"], r["status"], r["attempts"]) for r in _ledger(warehouse) if r["owner"] == "Ann Owner"] \
        == [("email", "sent", 1), ("file", "sent", 1), ("slack", "sent", 2)]
    assert _emit(warehouse, DAY, "run-3")["deliveries"] == 0 and len(slack.requests) == 2


def test_a_day_that_failed_the_quality_gate_or_is_long_past_sends_nothing(world):
    warehouse, slack, received = world
    with connect(warehouse.path) as con:
        con.execute("insert into marts.fct_quality_runs (run_id, usage_date, validated_at, status, summary, "
                    "expectation_count, failed_count, warning_count) "
                    "values ('q1', ?, now(), 'failed', 'broken', 3, 1, 0)", [DAY])
    assert _emit(warehouse, DAY, "run-1")["status"] == "blocked"
    late = savings_notices.emit_week(DAY, "run-2", config_dir=warehouse.config_dir, today=DAY + timedelta(days=8))
    assert late["status"] == "stale"
    assert _ledger(warehouse) == [] and slack.requests == [] and received == []
    assert not (settings.paths().alerts / f"savings-{DAY.isoformat()}.jsonl").exists()


def test_the_emit_alerts_task_sends_the_days_alerts_then_the_weeks_notices(world, monkeypatch):
    from openrouter_spend import pipeline

    warehouse, slack, received = world
    monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(warehouse.config_dir))
    monkeypatch.setattr(savings_notices, "_today", lambda: DAY + timedelta(days=1))
    evaluation = pipeline.evaluate_alerts(RunContext(DAY, "run-1", config_dir=warehouse.config_dir))
    emitted = pipeline.emit_alerts(RunContext(DAY, "run-1", config_dir=warehouse.config_dir))
    assert emitted["deliveries"] == evaluation["to_send"]
    assert (emitted["savings_notices"]["status"], emitted["savings_notices"]["sent"]) == ("planned", 5)
    assert len(_file_lines(DAY)) == 3
    assert [r["path"].split("/")[2] for r in slack.requests].count("ann") == 1
    again = pipeline.emit_alerts(RunContext(DAY, "run-2", config_dir=warehouse.config_dir))
    assert (again["deliveries"], again["savings_notices"]["deliveries"]) == (0, 0)


def test_a_quiet_week_still_runs_the_notice_and_a_sent_week_does_not(world):
    warehouse, slack, received = world
    today = DAY + timedelta(days=1)
    assert savings_notices.is_due(DAY, today=today)
    assert not savings_notices.is_due(DAY, today=DAY + timedelta(days=8))
    _emit(warehouse, DAY, "run-1")
    assert not savings_notices.is_due(DAY + timedelta(days=2), today=today + timedelta(days=2))
    slack.status, slack.reply = 500, b"server_error"
    replace_opportunities(warehouse.path, OPPORTUNITIES, day=DAY + timedelta(days=7))
    with pytest.raises(AlertDeliveryFailed):
        _emit(warehouse, DAY + timedelta(days=7), "run-8")
    assert savings_notices.is_due(DAY + timedelta(days=8), today=today + timedelta(days=8))
