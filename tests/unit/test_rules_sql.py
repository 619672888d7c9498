"""The rules' SQL and the ledger on hand-made fixture rows: budgets per period, launch windows, fallbacks,
quality blocking, unowned spend, runaway keys judged by accepted results, persistence and reruns."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from marts_fixtures import OWNERS, FixtureWarehouse, RawRows, key_hash

from openrouter_spend import alerts
from openrouter_spend.alerts.rules import evaluate_rule, load_rules
from openrouter_spend.config import settings
from openrouter_spend.warehouse import connect

MONDAY = date(2026, 3, 2)
WEEK = [MONDAY + timedelta(days=i) for i in range(8)]  # Monday 2 March .. Monday 9 March

LAUNCH_OWNERS = OWNERS.replace("""    budgets_usd: {daily: 10, weekly: 50, monthly: 200}
""", """    budgets_usd: {daily: 10, weekly: 50, monthly: 200}
    launch_windows:
      - {start: 2026-03-04, end: 2026-03-05, velocity_multiplier: 2, description: spring launch}
""")

INCIDENT = """
annotations:
  - id: vendor-outage
    kind: incident
    start: 2026-03-06
    end: 2026-03-06
    project: alpha
    signals: [fallback_rate]
    description: ProviderA down, traffic falls back
"""


def write_rules(folder, **rule_overrides) -> None:
    """The default rules.yaml with routes for the fixture owners (Ann, Bob) and optional rule overrides."""
    document = yaml.safe_load((settings.PROJECT_ROOT / "include" / "config" / "rules.yaml").read_text())
    document["routes"] = {
        "default": {"min_severity": "warning", "email": {"to": ["budget_owner", "finance@example.com"]}},
        "data-engineering": {"min_severity": "warning", "email": {"to": ["data-eng@example.com"]}},
    }
    for rule_id, overrides in rule_overrides.items():
        document["rules"][rule_id].update(overrides)
    (folder / "rules.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture
def make_warehouse(tmp_path, monkeypatch):
    """A fixture warehouse whose folder is OPENROUTER_SPEND_HOME, with rules.yaml in its config folder."""
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))

    def make(**config) -> FixtureWarehouse:
        warehouse = FixtureWarehouse(tmp_path, **config)
        write_rules(warehouse.config_dir)
        return warehouse

    return make


def spend_days(rows: RawRows, key: str, workspace: str | None, spends: dict[date, float], *,
               requests: int = 100, completion: int = 10_000) -> RawRows:
    for day, usage in spends.items():
        rows.key(day, key, workspace, last_used=day)
        rows.use(day, key, "vendor/m", requests=requests, usage=usage, prompt=requests * 1000,
                 completion=completion)
    return rows


def evaluate(warehouse: FixtureWarehouse, days: list[date]) -> list[dict]:
    for day in days:
        alerts.evaluate_day(day, f"run-{day}", config_dir=warehouse.config_dir)
    return warehouse.rows("select * from marts.fct_alerts order by usage_date, rule_id, segment_key")


def test_every_rule_returns_the_candidate_columns_even_on_an_empty_warehouse(make_warehouse):
    warehouse = make_warehouse()
    config = load_rules(warehouse.config_dir)
    with connect(warehouse.path) as con:
        con.execute("create table if not exists marts.fct_quality_runs (run_id varchar, usage_date date, "
                    "validated_at timestamptz, status varchar, failed_count integer, summary varchar)")
        for rule in config.rules.values():
            assert evaluate_rule(con, rule, MONDAY) == [], rule.rule_id  # and the columns were checked


def test_weekly_budget_fires_once_at_80_percent_then_escalates_at_100_and_a_new_week_starts_clean(make_warehouse):
    warehouse = make_warehouse()
    spends = dict(zip(WEEK, (8.0, 8.0, 8.0, 8.0, 9.0, 5.0, 6.0, 9.0), strict=True))
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", spends))
    warehouse.build(WEEK)

    ledger = [a for a in evaluate(warehouse, WEEK) if a["rule_id"] == "budget_threshold"]

    # Week to date: 8, 16, 24, 32 (64% of 50), 41 (82%), 46 (92%), 52 (104%); the next Monday restarts at 9.
    assert [(a["usage_date"], a["observed_value"], a["threshold_value"], a["severity"], a["occurrence"],
             a["is_notified"], a["first_seen_date"]) for a in ledger] == [
        (date(2026, 3, 6), pytest.approx(0.82), 0.8, "warning", "new", True, date(2026, 3, 6)),
        (date(2026, 3, 7), pytest.approx(0.92), 0.8, "warning", "ongoing", False, date(2026, 3, 6)),
        (date(2026, 3, 8), pytest.approx(1.04), 1.0, "critical", "escalated", True, date(2026, 3, 6)),
    ]
    assert {a["segment_key"] for a in ledger} == {"project=alpha|period=weekly|start=2026-03-02"}
    assert ledger[2]["impact_usd"] == pytest.approx(2.0)
    assert ledger[0]["budget_owner"] == "Ann Owner" and ledger[0]["status"] == "fired"
    assert ledger[0]["channels"] == ["file", "email:ann@example.com,finance@example.com"]
    assert "Spend $41.00 = 82.0% of the week-to-date budget (week of 2026-03-02) of $50.00" in ledger[0]["message"]
    # Who spent it and what to do: the project's keys and models over the week, and the owner's next step.
    assert json.loads(ledger[0]["contributors"]) == [
        {"dimension": "key", "name": "a-web", "spend_usd": 41.0},
        {"dimension": "model", "name": "vendor/m", "spend_usd": 41.0}]
    assert "Top contributors: key a-web ($41.00 spent); model vendor/m ($41.00 spent)" in ledger[0]["message"]
    assert "Action: Ann Owner: check the top contributors below against plan" in ledger[0]["message"]
    deliveries = warehouse.rows("select usage_date, channel, status from marts.fct_alert_deliveries "
                                "order by usage_date, channel")
    # The ongoing day (7 March) is in that day's file but pages nobody.
    assert deliveries == [
        {"usage_date": date(2026, 3, 6), "channel": "email", "status": "pending"},
        {"usage_date": date(2026, 3, 6), "channel": "file", "status": "pending"},
        {"usage_date": date(2026, 3, 7), "channel": "file", "status": "pending"},
        {"usage_date": date(2026, 3, 8), "channel": "email", "status": "pending"},
        {"usage_date": date(2026, 3, 8), "channel": "file", "status": "pending"},
    ]


def test_a_launch_window_raises_the_daily_budget_so_only_the_day_after_it_fires(make_warehouse):
    warehouse = make_warehouse(owners=LAUNCH_OWNERS)
    days = WEEK[:5]
    spends = dict(zip(days, (6.0, 6.0, 15.0, 15.0, 15.0), strict=True))
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", spends))
    warehouse.build(days)

    daily = [a for a in evaluate(warehouse, days) if a["segment_key"] == "project=alpha|period=daily"]

    # $15 against 10 × 2 inside the launch window (4-5 March) is 75%; on 6 March it is 150% of 10.
    assert [(a["usage_date"], a["observed_value"], a["impact_usd"], a["severity"]) for a in daily] == [
        (date(2026, 3, 6), pytest.approx(1.5), pytest.approx(5.0), "warning")]


def _fallback_rows(warehouse: FixtureWarehouse, today_fallbacks: int) -> None:
    with connect(warehouse.path) as con:
        con.execute("delete from marts.fct_fallback_daily")
        for day in WEEK[:5]:
            for workflow in ("w1", "w2"):
                fallbacks = today_fallbacks if (day == WEEK[4] and workflow == "w1") else 20
                extra = 9.0 if (day == WEEK[4] and workflow == "w1") else 0.2
                con.execute(
                    "insert into marts.fct_fallback_daily (usage_date, project, workflow, requests, fallback_requests, "
                    "fallback_share, spend_usd, fallback_spend_usd, fallback_extra_cost_usd) "
                    "values (?, 'alpha', ?, 1000, ?, ?, 50.0, ?, ?)",
                    [day, workflow, fallbacks, fallbacks / 1000, fallbacks * 0.05, extra])


@pytest.mark.parametrize("annotations", [None, INCIDENT], ids=["unexplained", "incident"])
def test_fallback_rate_rise_fires_from_fct_fallback_daily_rows_unless_an_incident_explains_it(
        make_warehouse, annotations):
    warehouse = make_warehouse(**({"annotations": annotations} if annotations else {}))
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", {day: 5.0 for day in WEEK[:5]}))
    warehouse.build(WEEK[:5])
    _fallback_rows(warehouse, today_fallbacks=300)

    fallback = [a for a in evaluate(warehouse, WEEK[:5]) if a["rule_id"] == "fallback_rate_rise"]

    # 6 March: (300 + 20) / 2000 = 16% vs 40 / 2000 = 2% usually; extra cost 9.2 - 0.0002 × 2000 = 8.8.
    assert len(fallback) == 1
    alert = fallback[0]
    assert (alert["usage_date"], alert["project"], alert["budget_owner"]) == (WEEK[4], "alpha", "Ann Owner")
    assert alert["observed_value"] == pytest.approx(0.16)
    assert alert["expected_value"] == pytest.approx(0.02)
    assert alert["impact_usd"] == pytest.approx(8.8)
    assert alert["history_days"] == 4
    assert alert["contributors"] and '"name":"w1"' in alert["contributors"].replace(" ", "")
    if annotations:
        assert (alert["status"], alert["is_notified"], alert["annotation_ids"]) == ("suppressed", False,
                                                                                     ["vendor-outage"])
        assert alert["explanation"].startswith("vendor-outage (incident, 2026-03-06..2026-03-06)")
    else:
        assert (alert["status"], alert["is_notified"], alert["explanation"]) == ("fired", True, None)


def test_a_small_fallback_rise_or_too_little_history_stays_silent(make_warehouse):
    warehouse = make_warehouse()
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", {day: 5.0 for day in WEEK[:5]}))
    warehouse.build(WEEK[:5])
    _fallback_rows(warehouse, today_fallbacks=200)  # (200 + 20) / 2000 = 11% vs 2%: +9 pp < 10 pp
    assert [a for a in evaluate(warehouse, WEEK[:5]) if a["rule_id"] == "fallback_rate_rise"] == []
    _fallback_rows(warehouse, today_fallbacks=300)
    with connect(warehouse.path) as con:
        con.execute("delete from marts.fct_fallback_daily where usage_date < ?", [WEEK[2]])  # 2 days of history
    assert [a for a in evaluate(warehouse, [WEEK[4]]) if a["rule_id"] == "fallback_rate_rise"] == []


def test_a_sampled_fallback_rise_fires_only_when_its_interval_clears_the_threshold(make_warehouse):
    warehouse = make_warehouse()
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", {day: 5.0 for day in WEEK[:5]}))
    warehouse.build(WEEK[:5])
    _fallback_rows(warehouse, today_fallbacks=300)  # point estimate 16% vs 2% usually: +14 pp
    with connect(warehouse.path) as con:
        # A small /generation sample: the 95% interval reaches down to 8%, only +6 pp above usual.
        con.execute("update marts.rpt_unit_economics_daily set fallback_request_share_ci_low = 0.08"
                    " where usage_date = ? and project = 'alpha'", [WEEK[4]])
        assert con.execute("select count(*) from marts.rpt_unit_economics_daily where usage_date = ?"
                           " and project = 'alpha'", [WEEK[4]]).fetchone()[0] == 1
    assert [a for a in evaluate(warehouse, [WEEK[4]]) if a["rule_id"] == "fallback_rate_rise"] == []
    with connect(warehouse.path) as con:
        con.execute("update marts.rpt_unit_economics_daily set fallback_request_share_ci_low = 0.13"
                    " where usage_date = ? and project = 'alpha'", [WEEK[4]])
    fired = [a for a in evaluate(warehouse, [WEEK[4]]) if a["rule_id"] == "fallback_rate_rise"]
    assert len(fired) == 1 and '"fallback_share_ci_low":0.13' in fired[0]["facts"].replace(" ", "")


def test_runaway_usage_ignores_acceptance_shares_from_too_few_verdicts(make_warehouse):
    warehouse = make_warehouse()
    days = WEEK[:5]
    rows = RawRows()
    for day in days:
        scale = 10 if day == WEEK[4] else 1
        rows.key(day, "a-batch", "ws-alpha", last_used=day)
        rows.use(day, "a-batch", "vendor/m", requests=1000 * scale, usage=2.0 * scale, prompt=1_000_000 * scale,
                 completion=100_000)  # output stays flat: a loop
    warehouse.load(rows)
    warehouse.build(days)
    with connect(warehouse.path) as con:
        for day in days:
            for index in range(10):  # 10 verdicts, all accepted: scaled to 10,000 requests it would look productive
                con.execute(
                    "insert into marts.fct_generations (generation_id, created_at, usage_date, project, workflow, "
                    "api_key_hash, is_accepted) values (?, ?, ?, 'alpha', 'job', ?, true)",
                    [f"gen-{day}-{index}", datetime.combine(day, datetime.min.time(), tzinfo=UTC), day,
                     key_hash("a-batch")])
    runaway = [a for a in evaluate(warehouse, days) if a["rule_id"] == "runaway_usage"]
    assert len(runaway) == 1 and runaway[0]["usage_date"] == WEEK[4]


def _quality_run(warehouse: FixtureWarehouse, day: date, status: str, validated_at: datetime) -> None:
    with connect(warehouse.path) as con:
        columns = {name for (name,) in con.execute(
            "select column_name from duckdb_columns() where schema_name = 'marts' "
            "and table_name = 'fct_quality_runs'").fetchall()}
        if not columns:  # the quality gate's migration is not installed: create its contract columns
            columns = {"run_id", "usage_date", "validated_at", "status", "failed_count", "summary"}
            con.execute("create table marts.fct_quality_runs (run_id varchar, usage_date date, validated_at "
                        "timestamptz, status varchar, failed_count integer, summary varchar)")
        values = {"run_id": f"q-{status}", "usage_date": day, "validated_at": validated_at, "status": status,
                  "failed_count": 2 if status == "failed" else 0, "summary": f"{status}: 2 of 30 expectations",
                  "expectation_count": 30, "warning_count": 0}
        values = {k: v for k, v in values.items() if k in columns}
        con.execute(f"insert into marts.fct_quality_runs ({', '.join(values)}) "
                    f"values ({', '.join('?' for _ in values)})", list(values.values()))


def test_a_failed_quality_gate_blocks_decision_alerts_and_a_passing_rerun_releases_them(make_warehouse):
    warehouse = make_warehouse()
    days = WEEK[:5]
    spends = dict(zip(days, (8.0, 8.0, 8.0, 8.0, 9.0), strict=True))
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", spends))
    warehouse.build(days)
    _quality_run(warehouse, WEEK[4], "failed", datetime(2026, 3, 7, 1, tzinfo=UTC))

    summary = alerts.evaluate_day(WEEK[4], "run-1", config_dir=warehouse.config_dir)
    ledger = {a["rule_id"]: a for a in warehouse.rows("select * from marts.fct_alerts")}

    assert summary["quality_status"] == "failed" and summary["blocked"] == 1 and summary["fired"] == 1
    assert (ledger["budget_threshold"]["status"], ledger["budget_threshold"]["is_notified"]) == ("blocked", False)
    assert ledger["budget_threshold"]["explanation"].startswith("blocked: the day failed the data-quality gate")
    quality = ledger["data_quality"]
    assert (quality["status"], quality["severity"], quality["route"], quality["observed_value"]) == \
        ("fired", "critical", "data-engineering", 2.0)
    assert quality["channels"] == ["file", "email:data-eng@example.com"]

    _quality_run(warehouse, WEEK[4], "passed", datetime(2026, 3, 7, 2, tzinfo=UTC))
    summary = alerts.evaluate_day(WEEK[4], "run-2", config_dir=warehouse.config_dir)

    ledger = {a["rule_id"]: a for a in warehouse.rows("select * from marts.fct_alerts")}
    assert summary["quality_status"] == "passed" and set(ledger) == {"budget_threshold"}
    assert (ledger["budget_threshold"]["status"], ledger["budget_threshold"]["is_notified"]) == ("fired", True)
    states = warehouse.rows("select channel, route, status from marts.fct_alert_deliveries order by route, channel")
    assert states == [
        {"channel": "email", "route": "data-engineering", "status": "cancelled"},
        {"channel": "file", "route": "data-engineering", "status": "cancelled"},
        {"channel": "email", "route": "default", "status": "pending"},
        {"channel": "file", "route": "default", "status": "pending"},
    ]


def test_unowned_spend_fires_when_the_tolerated_tail_is_exceeded(make_warehouse):
    warehouse = make_warehouse()
    days = WEEK[:5]
    rows = spend_days(RawRows(), "a-web", "ws-alpha", {day: 90.0 for day in days})
    spend_days(rows, "personal", None, dict(zip(days, (5.0, 5.0, 5.0, 30.0, 30.0), strict=True)))
    warehouse.load(rows)
    warehouse.build(days)

    unowned = [a for a in evaluate(warehouse, days) if a["rule_id"] == "unowned_spend"]

    # 5 March: 45 of 405 (11%) but under the $50 floor; 6 March: 75 of 525 = 14.3%.
    assert [(a["usage_date"], a["observed_value"], a["impact_usd"], a["budget_owner"], a["route"])
            for a in unowned] == [(WEEK[4], pytest.approx(75 / 525), pytest.approx(75.0), None, "default")]
    assert '"name":"personal"' in unowned[0]["contributors"].replace(" ", "")
    assert unowned[0]["channels"] == ["file", "email:finance@example.com"]


def test_runaway_usage_is_judged_by_accepted_results_where_per_request_data_exists(make_warehouse):
    warehouse = make_warehouse()
    days = WEEK[:5]
    rows = RawRows()
    for key in ("a-batch", "a-web"):
        for day in days:
            scale = 10 if day == WEEK[4] else 1
            rows.key(day, key, "ws-alpha", last_used=day)
            rows.use(day, key, "vendor/m", requests=1000 * scale, usage=2.0 * scale, prompt=1_000_000 * scale,
                     completion=100_000 * scale)
    warehouse.load(rows)
    warehouse.build(days)
    with connect(warehouse.path) as con:
        for key, loop_accepted in (("a-batch", 4), ("a-web", 36)):
            for day in days:
                accepted = loop_accepted if day == WEEK[4] else 36
                for index in range(40):
                    con.execute(
                        "insert into marts.fct_generations (generation_id, created_at, usage_date, project, workflow, "
                        "api_key_hash, is_accepted) values (?, ?, ?, 'alpha', ?, ?, ?)",
                        [f"gen-{key}-{day}-{index}", datetime.combine(day, datetime.min.time(), tzinfo=UTC), day,
                         f"{key}-job", key_hash(key), index < accepted])

    runaway = [a for a in evaluate(warehouse, days) if a["rule_id"] == "runaway_usage"]

    # Both keys ran 10× their requests with 10× the output tokens; only a-batch's accepted results stayed flat:
    # 10000 × 4/40 = 1000 accepted vs 1000 × 36/40 = 900 usually (1.1×). Impact = 20 − 2 × 1.11 = $17.78.
    assert len(runaway) == 1
    alert = runaway[0]
    assert (alert["usage_date"], alert["api_key_name"], alert["workflow"], alert["metric"]) == \
        (WEEK[4], "a-batch", "a-batch-job", "requests")
    assert (alert["observed_value"], alert["expected_value"]) == (10_000, 1000)
    assert alert["impact_usd"] == pytest.approx(20.0 - 2.0 * 1000 / 900)
    assert '"results_measure":"accepted_results"' in alert["facts"].replace(" ", "")
    assert "accepted results 1.1× usual" in alert["message"]


def test_reruns_keep_ids_and_never_replan_a_sent_delivery(make_warehouse):
    warehouse = make_warehouse()
    spends = dict(zip(WEEK[:5], (8.0, 8.0, 8.0, 8.0, 9.0), strict=True))
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", spends))
    warehouse.build(WEEK[:5])
    first = alerts.evaluate_day(WEEK[4], "run-1", config_dir=warehouse.config_dir)
    ids = warehouse.rows("select alert_id from marts.fct_alerts")
    with connect(warehouse.path) as con:
        con.execute("update marts.fct_alert_deliveries set status = 'sent' where channel = 'file'")

    second = alerts.evaluate_day(WEEK[4], "run-2", config_dir=warehouse.config_dir)

    assert (first["to_send"], second["to_send"]) == (2, 1)
    assert warehouse.rows("select alert_id from marts.fct_alerts") == ids
    assert warehouse.rows("select channel, status from marts.fct_alert_deliveries order by channel") == [
        {"channel": "email", "status": "pending"}, {"channel": "file", "status": "sent"}]
    assert [r["run_id"] for r in warehouse.rows("select run_id from marts.fct_alert_runs order by run_id")] == \
        ["run-1", "run-2"]


def test_a_condition_that_clears_for_longer_than_resolve_after_days_starts_a_new_streak(make_warehouse):
    warehouse = make_warehouse()
    days = [MONDAY + timedelta(days=i) for i in range(10)]
    spends = {day: (12.0 if day in (days[0], days[1], days[6]) else 5.0) for day in days}
    warehouse.load(spend_days(RawRows(), "a-web", "ws-alpha", spends))
    warehouse.build(days)

    ledger = evaluate(warehouse, days)
    daily = [a for a in ledger if a["segment_key"] == "project=alpha|period=daily"]

    # Over the daily budget on 2, 3 and 8 March; 4..7 March is four quiet days > resolve_after_days (3).
    assert [(a["usage_date"], a["occurrence"], a["first_seen_date"]) for a in daily] == [
        (days[0], "new", days[0]), (days[1], "ongoing", days[0]), (days[6], "new", days[6])]
    assert [a["is_notified"] for a in daily[:2]] == [True, False]
    # On 8 March the same $12 also takes the week to $56 of $50: one cause (alpha's spend that day), so the
    # weekly breach (critical) is the root that is sent and carries the daily one.
    weekly = next(a for a in ledger if a["usage_date"] == days[6] and a["rule_id"] == "budget_threshold"
                  and "weekly" in a["segment_key"])
    assert (daily[2]["root_alert_id"], daily[2]["is_notified"]) == (weekly["alert_id"], False)
    assert (weekly["linked_alert_ids"], weekly["is_notified"], weekly["severity"]) == \
        ([daily[2]["alert_id"]], True, "critical")
    assert "Explains 1 other alert(s) of this day" in weekly["message"]
    # It is listed in the day's file (every open condition is) but pages nobody on its own.
    assert daily[2]["channels"] == ["file"] and "Explained by: [CRITICAL]" in daily[2]["message"]
    assert f"week-to-date budget (week of 2026-03-02) on {days[6]} (alert {weekly['alert_id']}); sent with it." \
        in daily[2]["message"]
