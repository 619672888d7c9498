"""Idle keys in the alert ledger: a row when a key becomes unused, escalates or stops being unused, never a row
per key per day; the keys of one owner that are news on a day go out as one message listing them."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from marts_fixtures import OWNERS, FixtureWarehouse, RawRows
from test_rules_sql import write_rules

from openrouter_spend import alerts

DAYS = [date(2026, 3, 2) + timedelta(days=i) for i in range(5)]
LONG_AGO = DAYS[0] - timedelta(days=20)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """Five days: alpha (Ann) has a busy key and three idle ones, one of which is used again on day 4;
    beta (Bob) has one idle key; unused_key_days is 3."""
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    rows = RawRows()
    for day in DAYS:
        rows.key(day, "a-web", "ws-alpha", last_used=day)
        rows.use(day, "a-web", "vendor/m", requests=100, usage=1.0)
        rows.key(day, "a-idle-1", "ws-alpha", last_used=LONG_AGO)
        rows.key(day, "a-idle-2", "ws-alpha", created=LONG_AGO)  # never used
        rows.key(day, "a-back", "ws-alpha", last_used=DAYS[3] if day >= DAYS[3] else LONG_AGO)
        rows.key(day, "beta-idle", "ws-beta", last_used=LONG_AGO)
    rows.use(DAYS[3], "a-back", "vendor/m", requests=5, usage=0.1)
    built = FixtureWarehouse(tmp_path, owners=OWNERS)
    write_rules(built.config_dir)
    built.load(rows)
    built.build(DAYS)
    return built


def _evaluate(warehouse, days=DAYS) -> None:
    for day in days:
        alerts.evaluate_day(day, f"run-{day}", config_dir=warehouse.config_dir)


def _ledger(warehouse) -> list[tuple]:
    return [(r["usage_date"], r["api_key_name"], r["occurrence"], r["severity"], r["is_notified"]) for r in
            warehouse.rows("select * from marts.fct_alerts where rule_id = 'unused_key' "
                           "order by usage_date, api_key_name")]


def _messages(warehouse) -> list[tuple]:
    """Every planned unused-key delivery: (day, channel, the notified key, the keys its message lists)."""
    rows = warehouse.rows(
        "select deliveries.usage_date, deliveries.channel, alerts.api_key_name, alerts.facts, alerts.message "
        "from marts.fct_alert_deliveries as deliveries inner join marts.fct_alerts as alerts using (alert_id) "
        "where alerts.rule_id = 'unused_key' order by all")
    names = {r["alert_id"]: r["api_key_name"] for r in warehouse.rows("select * from marts.fct_alerts")}
    return [(r["usage_date"], r["channel"], r["api_key_name"],
             sorted(names[i] for i in json.loads(r["facts"]).get("listed_alert_ids", []))) for r in rows]


def test_an_idle_key_is_recorded_when_it_becomes_unused_and_when_it_is_used_again(warehouse):
    _evaluate(warehouse)

    assert _ledger(warehouse) == [
        (DAYS[0], "a-back", "new", "info", True),  # Ann's notice, carried by her first key
        (DAYS[0], "a-idle-1", "new", "info", False),
        (DAYS[0], "a-idle-2", "new", "info", False),
        (DAYS[0], "beta-idle", "new", "info", True),
        # nothing on the days the keys stay unused; a-back is used again on day 4
        (DAYS[3], "a-back", "resolved", "info", False),
    ]
    resolved = warehouse.rows("select * from marts.fct_alerts where occurrence = 'resolved'")[0]
    assert (json.loads(resolved["facts"])["reason"], resolved["first_seen_date"]) == ("used", DAYS[0])
    assert resolved["title"].startswith("[INFO] Key no longer unused: key a-back (alpha)")
    # one message per owner on the file channel: Ann's lists her three keys, Bob's his one
    assert _messages(warehouse) == [(DAYS[0], "file", "a-back", ["a-idle-1", "a-idle-2"]),
                                    (DAYS[0], "file", "beta-idle", [])]
    notice = warehouse.rows("select * from marts.fct_alerts where api_key_name = 'a-back' and occurrence = 'new'")[0]
    assert notice["title"] == f"[INFO] 3 unused keys of Ann Owner on {DAYS[0]}"
    assert [line.split(" (")[0] for line in notice["message"].splitlines() if line.startswith("- ")] == \
        ["- a-back", "- a-idle-1", "- a-idle-2"]
    listed = warehouse.rows("select * from marts.fct_alerts where api_key_name = 'a-idle-1'")[0]
    assert json.loads(listed["facts"])["notice_alert_id"] == notice["alert_id"]
    assert f"Listed in the notice to Ann Owner (alert {notice['alert_id']})" in listed["message"]
    # every message still ends with a query that runs as it is
    for message in (notice["message"], listed["message"], resolved["message"]):
        warehouse.rows(message.rsplit("Reproduce: ", 1)[1])
    # the alert runs still prove every day was evaluated
    assert [r["alerts"] for r in warehouse.rows("select alerts from marts.fct_alert_runs order by usage_date")] \
        == [4, 0, 0, 1, 0]


def test_a_rerun_of_a_day_keeps_the_state_changes(warehouse):
    _evaluate(warehouse)
    before = _ledger(warehouse)
    _evaluate(warehouse, [DAYS[0], DAYS[3], DAYS[4]])
    assert _ledger(warehouse) == before
    assert len(_messages(warehouse)) == 2


def test_a_key_that_stays_unused_escalates_instead_of_repeating(warehouse):
    write_rules(warehouse.config_dir, unused_key={"escalate_after_days": 2})
    _evaluate(warehouse)

    ledger = _ledger(warehouse)
    assert [row for row in ledger if row[1] == "beta-idle"] == [
        (DAYS[0], "beta-idle", "new", "info", True),
        (DAYS[2], "beta-idle", "escalated", "warning", True),
        (DAYS[4], "beta-idle", "escalated", "critical", True),
    ]
    assert [row[0] for row in ledger if row[1] == "a-back"] == [DAYS[0], DAYS[2], DAYS[3]]
    # Ann's escalation is one message per channel listing her two keys still idle on day 5
    day_five = [m for m in _messages(warehouse) if m[0] == DAYS[4] and m[2] != "beta-idle"]
    assert day_five == [(DAYS[4], "email", "a-idle-1", ["a-idle-2"]), (DAYS[4], "file", "a-idle-1", ["a-idle-2"])]
