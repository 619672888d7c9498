"""What the digest reads from a small warehouse with hand-computed numbers, including the honest states of the
tables later steps fill (alerts, quality) when they are absent, empty or filled."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows

from openrouter_spend.reports import focus
from openrouter_spend.reports.digest import render_day, write_day
from openrouter_spend.reports.digest.data import collect
from openrouter_spend.warehouse import connect

PRIOR = DAY - timedelta(days=1)  # Sunday 1 March 2026; DAY is Monday 2 March


def scenario() -> RawRows:
    """alpha (owned, explained by the alpha-release annotation), beta (owned, unexplained jump) and an unowned key."""
    rows = RawRows()
    for day in (PRIOR, DAY):
        rows.workspace(day, "ws-alpha", "alpha-space").workspace(day, "ws-beta", "beta-space")
        rows.price(day, "vendor/pro", 3.0, 18.0).price(day, "vendor/lite", 0.2, 0.8)
        rows.key(day, "a-web", "ws-alpha", last_used=day).key(day, "beta-api", "ws-beta", last_used=day)
        rows.key(day, "personal", None, last_used=day)
    rows.use(PRIOR, "a-web", "vendor/pro", "P1", requests=100, usage=4.0, prompt=100_000, completion=10_000)
    rows.use(PRIOR, "beta-api", "vendor/lite", "P2", requests=50, usage=2.0, prompt=50_000, completion=5_000)
    rows.use(PRIOR, "personal", "vendor/lite", "P2", requests=10, usage=0.5, prompt=10_000, completion=1_000)
    rows.use(DAY, "a-web", "vendor/pro", "P1", requests=300, usage=12.0, prompt=300_000, completion=30_000)
    rows.use(DAY, "beta-api", "vendor/lite", "P2", requests=150, usage=8.0, prompt=150_000, completion=15_000,
             byok=1.5)
    rows.use(DAY, "personal", "vendor/lite", "P2", requests=10, usage=1.0, prompt=10_000, completion=1_000)
    rows.credit(PRIOR, 100.0, 6.5).credit(DAY, 150.0, 27.5)  # a $50 top-up on DAY; burns 6.5 then 21
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    built = FixtureWarehouse(tmp_path_factory.mktemp("digest-data"))
    built.load(scenario())
    built.build([PRIOR, DAY])
    return built


@pytest.fixture
def copy(warehouse, tmp_path):
    return warehouse.copy_to(tmp_path / "copy")


def _collect(path, day=DAY):
    with connect(path, read_only=True) as con:
        return collect(con, day, "test warehouse")


def test_headline_budget_and_month_figures(warehouse):
    data = _collect(warehouse.path)
    assert data.has_data
    assert data.totals["spend_usd"] == pytest.approx(21.0)
    assert data.totals["byok_spend_usd"] == pytest.approx(1.5)
    assert data.totals["requests"] == 460 and data.totals["active_keys"] == 3
    assert data.balance["balance_usd"] == pytest.approx(122.5)
    assert data.balance["topup_usd"] == pytest.approx(50.0)
    assert data.balance["burn_7d_avg_usd"] == pytest.approx(13.75)
    assert data.balance["runway_days"] == pytest.approx(122.5 / 13.75)
    assert data.month["month_to_date_usd"] == pytest.approx(27.5)
    assert (data.month["days_elapsed"], data.month["loaded_days"]) == (2, 2)
    budgets = {row["project"]: row for row in data.budgets}
    assert budgets["alpha"]["spend_usd"] == pytest.approx(12.0) and budgets["alpha"]["status"] == "over"
    assert budgets["alpha"]["daily_budget_used_ratio"] == pytest.approx(1.2)
    assert budgets["beta"]["spend_usd"] == pytest.approx(8.0) and budgets["beta"]["status"] == "over"
    assert budgets["(unowned)"]["spend_usd"] == pytest.approx(1.0)
    assert budgets["(unowned)"]["month_to_date_spend_usd"] == pytest.approx(1.5)
    assert budgets["(unowned)"]["status"] == "no_owner"
    assert sum(row["spend_usd"] for row in data.budgets) == pytest.approx(21.0)


def test_changes_carry_their_annotations_and_findings_name_owners(warehouse):
    data = _collect(warehouse.path)
    changes = {row["project"]: row for row in data.changes}
    assert changes["*"]["delta_usd"] == pytest.approx(14.5)
    assert changes["beta"]["delta_usd"] == pytest.approx(6.0)
    assert [a["annotation_id"] for a in changes["alpha"]["annotations"]] == ["alpha-release"]
    assert changes["beta"]["annotations"] == []
    texts = [(finding.severity, finding.text, finding.owner) for finding in data.findings]
    assert texts[0][0] == "warning" and "Top up credits" in texts[0][1] and "8.9 days" in texts[0][1]
    assert ("warning", "alpha is over its daily budget: $12.00 of $10.00 (120%).", "Ann Owner") in texts
    assert ("warning", "beta is over its daily budget: $8.00 of $5.00 (160%).", "Bob Owner") in texts
    unexplained = [text for _, text, owner in texts if "more than the day before" in text]
    assert len(unexplained) == 1 and unexplained[0].startswith("beta spent $6.00 more than the day before (+300%)")
    assert any("Assign owners: $1.00 came from 1 key(s)" in text and "personal" in text for _, text, _ in texts)


def test_alert_states_distinguish_not_evaluated_from_none_fired(copy):
    assert _collect(copy.path).alerts_state == "not_evaluated"
    with connect(copy.path) as con:
        con.execute("""create table if not exists marts.fct_alert_runs (
            usage_date date not null, run_id varchar not null, evaluated_at timestamptz not null,
            quality_status varchar not null, quality_summary varchar, rules_evaluated varchar[] not null,
            alerts integer not null, fired integer not null, suppressed integer not null, blocked integer not null,
            notified integer not null, to_send integer not null)""")
        con.execute("insert into marts.fct_alert_runs (usage_date, run_id, evaluated_at, quality_status, "
                    "rules_evaluated, alerts, fired, suppressed, blocked, notified, to_send) values "
                    "(?, 'r1', now(), 'passed', ['budget_threshold'], 0, 0, 0, 0, 0, 0)", [DAY])
    assert _collect(copy.path).alerts_state == "none_fired"
    assert _collect(copy.path, PRIOR).alerts_state == "not_evaluated"
    with connect(copy.path) as con:
        con.execute("insert into marts.fct_alerts (alert_id, rule_id, usage_date, severity, project, budget_owner, "
                    "metric, observed_value, expected_value, threshold_value, impact_usd, explanation, status, "
                    "channels, first_seen_date) values ('a1', 'budget_threshold', ?, 'warning', 'beta', 'Bob Owner', "
                    "'daily_budget_used_ratio', 1.6, 1.0, 1.0, 3.0, null, 'fired', ['email'], ?)", [DAY, DAY])
    data = _collect(copy.path)
    assert data.alerts_state == "fired" and [a["alert_id"] for a in data.alerts] == ["a1"]
    files, summary = _render(copy.path)
    assert summary["alerts_fired"] == 1
    assert b"budget_threshold" in files["digest.html"] and b"a1,budget_threshold," in files["alerts.csv"]


def _render(path, day=DAY):
    with connect(path, read_only=True) as con:
        return render_day(con, day, "test warehouse")


def _quality_tables(con):
    con.execute("""create table if not exists marts.fct_quality_runs (
        run_id varchar not null, usage_date date not null, validated_at timestamptz not null, status varchar not null,
        expectation_count integer not null, failed_count integer not null, warning_count integer not null,
        summary varchar not null)""")
    con.execute("""create table if not exists marts.fct_quality_results (
        run_id varchar not null, usage_date date not null, check_id varchar not null, validated_at timestamptz not null,
        suite varchar not null, dataset varchar not null, expectation_type varchar not null, description varchar not null,
        severity varchar not null, success boolean not null, message varchar)""")


def test_quality_gate_status_is_shown_as_recorded(copy):
    assert _collect(copy.path).quality_state == "not_run"
    with connect(copy.path) as con:
        _quality_tables(con)
        con.execute("insert into marts.fct_quality_runs (run_id, usage_date, validated_at, status, expectation_count, "
                    "failed_count, warning_count, summary) values ('r1', ?, '2026-03-03 01:00:00+00', 'passed', 40, 0, "
                    "0, '40 expectations held')", [DAY])
    assert _collect(copy.path).quality_state == "passed"
    with connect(copy.path) as con:
        con.execute("insert into marts.fct_quality_runs (run_id, usage_date, validated_at, status, expectation_count, "
                    "failed_count, warning_count, summary) values ('r2', ?, '2026-03-03 02:00:00+00', 'failed', 40, 1, "
                    "0, '1 expectation failed')", [DAY])
        con.execute("insert into marts.fct_quality_results (run_id, usage_date, check_id, validated_at, suite, dataset, "
                    "expectation_type, description, severity, success, message) values ('r2', ?, "
                    "'marts.fct_daily_spend:spend_usd:non_negative', now(), 'marts', 'marts.fct_daily_spend', "
                    "'expect_column_values_to_be_between', 'spend is never negative', 'error', false, "
                    "'2 rows below 0')", [DAY])
    data = _collect(copy.path)
    assert data.quality_state == "failed" and data.quality["run_id"] == "r2"
    assert data.findings[0].severity == "critical" and "quality gate failed" in data.findings[0].text
    files, summary = _render(copy.path)
    assert summary["quality_state"] == "failed"
    assert b"2 rows below 0" in files["digest.html"] and b"Data-quality gate: failed" in files["digest.md"]


def test_missing_optional_tables_render_honest_statements(copy):
    with connect(copy.path) as con:
        for table in ("fct_alerts", "fct_quality_runs", "fct_quality_results", "rpt_blind_spots_daily",
                      "fct_fallback_daily", "fct_alert_runs", "fct_alert_deliveries"):
            con.execute(f"drop table if exists marts.{table}")
    files, summary = _render(copy.path)
    html = files["digest.html"].decode()
    assert (summary["alerts_state"], summary["quality_state"]) == ("not_evaluated", "not_run")
    assert "No alerts evaluated." in html and "The data-quality gate has not run for this day" in html
    assert "fallback frequency, accepted results and cost per accepted result are unknown (not zero)" in html
    assert files["alerts.csv"].decode().splitlines() == [
        "alert_id,rule_id,usage_date,severity,project,budget_owner,metric,observed_value,expected_value,"
        "threshold_value,impact_usd,explanation,status,channels,first_seen_date"]


def test_a_day_without_data_says_so(warehouse):
    files, summary = _render(warehouse.path, date(2026, 2, 20))
    assert summary["has_data"] is False and summary["spend_usd"] == 0
    assert b"No usage or credit data is loaded for Friday 20 February 2026" in files["digest.html"]
    assert json.loads(files["summary.json"])["findings"] == []


def test_focus_rows_split_purchase_usage_and_byok(warehouse):
    with connect(warehouse.path, read_only=True) as con:
        rows = focus.rows(con, DAY)
    usage = [row for row in rows if row["ChargeCategory"] == "Usage"]
    purchases = [row for row in rows if row["ChargeCategory"] == "Purchase"]
    assert len(usage) == 3 and len(purchases) == 1
    assert purchases[0]["BilledCost"] == pytest.approx(50.0) and purchases[0]["EffectiveCost"] == 0
    assert sum(row["EffectiveCost"] for row in usage) == pytest.approx(21.0)
    assert sum(row["BilledCost"] for row in usage) == 0
    beta = next(row for row in usage if row["x_project"] == "beta")
    assert beta["x_is_byok"] is True and beta["x_byok_provider_billed_cost_usd"] == pytest.approx(1.5)
    assert beta["EffectiveCost"] == pytest.approx(8.0), "BYOK inference is not in any FOCUS cost column"
    assert "BYOK inference billed by P2 directly is not included" in beta["ChargeDescription"]
    alpha = next(row for row in usage if row["x_project"] == "alpha")
    assert json.loads(alpha["Tags"]) == {"project": "alpha", "team": "Team A", "budget_owner": "Ann Owner"}
    assert alpha["x_is_premium"] is True and alpha["SkuPriceId"] == "vendor/pro@P1"
    assert alpha["ConsumedQuantity"] == 330_000 and alpha["x_fallback_requests"] is None
    assert {row["ChargePeriodStart"].date() for row in rows} == {DAY}
    assert {row["BillingPeriodStart"].date() for row in rows} == {date(2026, 3, 1)}


def test_write_day_reads_the_live_warehouse_read_only_when_asked(warehouse, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "warehouse.duckdb").write_bytes(warehouse.path.read_bytes())
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(home))
    monkeypatch.delenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", raising=False)
    result = write_day(DAY, source="live")
    assert result["source"].startswith("live warehouse") and result["spend_usd"] == pytest.approx(21.0)
    assert result["focus"]["rows"] == 4 and result["focus"]["billed_cost_usd"] == pytest.approx(50.0)
    assert (home / "digests" / DAY.isoformat() / "digest.html").exists()
    assert (home / "focus" / f"{DAY.isoformat()}.parquet").exists()
    assert sorted(p.name for p in (home / "digests").iterdir()) == [DAY.isoformat()], "no temporary folders left"


def test_a_late_snapshot_and_requests_waiting_for_details_are_named_among_the_blind_spots(copy):
    with connect(copy.path) as con:  # DAY's /credits snapshot fetched three days late, as a backfill does
        con.execute("update raw.credits set fetched_at = fetched_at + interval 3 day where partition_date = ?", [DAY])
    copy.build([DAY])
    reason = f"the /credits snapshot of {DAY} (late: fetched 2026-03-06 00:10 UTC, after 2026-03-03 ended)"
    with connect(copy.path) as con:
        con.execute("insert into marts.fct_quality_runs (run_id, usage_date, validated_at, status, expectation_count, "
                    "failed_count, warning_count, summary) values ('r1', ?, now(), 'passed', 1, 0, 0, 'held')", [DAY])
        con.execute("insert into marts.fct_quality_results (run_id, usage_date, check_id, validated_at, suite, dataset, "
                    "expectation_type, description, severity, success, compared_values, skip_reason) values "
                    "('r1', ?, 'reconcile.credits_vs_activity:usage_delta_matches_activity', now(), 'reconciliation', "
                    "'reconcile.credits_vs_activity', 'x', 'the delta matches', 'error', true, 'skipped', ?)",
                    [DAY, reason])
        con.execute("insert into marts.fct_generations (generation_id, usage_date, project, enrichment_status) "
                    "values ('g1', ?, 'beta', 'pending'), ('g2', ?, 'beta', 'fetched')", [DAY, DAY])
    data = _collect(copy.path)
    assert data.balance["balance_usd"] is None and data.balance["snapshot_timing"] == "late"
    assert f"/credits usage was not reconciled with activity: {reason}." in data.blind_spots
    assert any(spot.startswith("The credit balance, top-up and runway at the end of this day are unknown")
               for spot in data.blind_spots)
    assert any(spot.startswith("1 logged request(s) of this day still wait") for spot in data.blind_spots)
    files, summary = _render(copy.path)  # an unknown balance renders as unknown, never as a figure
    assert summary["balance_usd"] is None
    assert "Credit balance:** — (unknown" in files["digest.md"].decode()
