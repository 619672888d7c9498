"""Reconciliation and completeness frames on fixture rows whose every amount is known."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.quality import reconcile
from openrouter_spend.quality.reconcile import PER_KEY_ACTIVITY, Tolerances
from openrouter_spend.warehouse import connect

D1, D2, D3 = DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)
TOL = Tolerances()


def organisation(days=(D1, D2, D3), credits_jump_on: date | None = None) -> RawRows:
    """Two keys and a deleted one; /credits and /keys lifetime usage grow by exactly the day's activity."""
    rows = RawRows()
    usage = {"a-web": 10.0, "beta-api": 5.0}
    byok = {"a-web": 0.0, "beta-api": 0.0}
    total_usage = 100.0
    for index, day in enumerate(days):
        rows.workspace(day, "ws-alpha", "alpha-space").workspace(day, "ws-beta", "beta-space")
        rows.price(day, "vendor/pro", 3.0, 10.0).price(day, "vendor/lite", 0.2, 0.8)
        if index > 0:  # the first day is the baseline snapshot: nothing used yet
            rows.use(day, "a-web", "vendor/pro", "P1", requests=10, usage=2.0, byok=0.5)
            rows.use(day, "beta-api", "vendor/lite", "P2", requests=5, usage=1.0)
            rows.unlisted_use(day, "vendor/lite", "P2", requests=3, usage=0.75)
            usage["a-web"] += 2.0
            byok["a-web"] += 0.5
            usage["beta-api"] += 1.0
            total_usage += 3.75
        for name, workspace in (("a-web", "ws-alpha"), ("beta-api", "ws-beta")):
            rows.key(day, name, workspace, last_used=day)
            rows.keys[-1][1].update(usage=usage[name], byok_usage=byok[name])
        rows.credit(day, 1000.0, total_usage + (25.0 if day == credits_jump_on else 0.0))
    return rows


@pytest.fixture
def warehouse(tmp_path):
    house = FixtureWarehouse(tmp_path)
    house.load(organisation())
    house.build([D1, D2, D3])
    return house


def frame(house: FixtureWarehouse, function, *args):
    with connect(house.path) as con:
        return function(con, *args)


def test_key_vs_account_reports_the_remainder_as_unattributed(warehouse):
    rows = frame(warehouse, reconcile.key_vs_account, D2).set_index("model_permaslug")
    assert rows.loc["vendor/pro", "unattributed_usage_usd"] == pytest.approx(0.0)
    assert rows.loc["vendor/lite", "account_usage_usd"] == pytest.approx(1.75)
    assert rows.loc["vendor/lite", "key_usage_usd"] == pytest.approx(1.0)
    assert rows.loc["vendor/lite", "unattributed_usage_usd"] == pytest.approx(0.75)
    assert rows.loc["vendor/lite", "key_excess_requests"] == -3
    assert (rows.key_excess_usage_usd <= TOL.float_noise_usd).all()


def test_key_vs_account_flags_keys_that_spend_more_than_the_account(tmp_path):
    house = FixtureWarehouse(tmp_path)
    rows = organisation()
    rows.use(D2, "beta-api", "vendor/lite", "P9", requests=2, usage=0.5)
    house.load(rows)
    with connect(house.path) as con:  # the account-level activity lost that model × provider
        con.execute("delete from raw.activity where scope = 'account' and partition_date = ? "
                    "and payload ->> 'endpoint_id' = 'vendor/lite|P9'", [D2])
    rows = frame(house, reconcile.key_vs_account, D2).set_index("provider_name")
    assert rows.loc["P9", "key_usage_usd"] == pytest.approx(0.5)
    assert rows.loc["P9", "account_usage_usd"] == 0
    assert rows.loc["P9", "key_excess_usage_usd"] == pytest.approx(0.5)
    assert rows.loc["P9", "key_excess_requests"] == 2
    assert rows.loc["P2", "key_excess_usage_usd"] == pytest.approx(-0.75)  # the deleted key's remainder


def test_marts_vs_account_keeps_unattributed_spend_in_the_mart(warehouse):
    row = frame(warehouse, reconcile.marts_vs_account, D2).iloc[0]
    assert row.account_usage_usd == pytest.approx(3.75)
    assert row.mart_spend_usd == pytest.approx(3.75)
    assert row.unattributed_usd == pytest.approx(0.75)
    assert row.mart_unattributed_usd == pytest.approx(0.75)
    assert row.mart_minus_account_usd == pytest.approx(0.0, abs=1e-9)
    assert row.mart_minus_account_requests == 0
    assert row.unattributed_share == pytest.approx(0.2)


def test_credits_delta_matches_activity_and_a_jump_is_the_difference(tmp_path, warehouse):
    clean = frame(warehouse, reconcile.credits_vs_activity, D2, TOL).iloc[0]
    assert clean.previous_snapshot_date.date() == D1
    assert clean.usage_delta_usd == pytest.approx(3.75)
    assert clean.activity_usage_usd == pytest.approx(3.75)
    assert clean.difference_usd == pytest.approx(0.0, abs=1e-9)
    assert clean.tolerance_usd == pytest.approx(0.05 + 0.01 * 3.75)
    assert frame(warehouse, reconcile.credits_vs_activity, D1, TOL).empty  # no earlier snapshot

    jumped = FixtureWarehouse(tmp_path / "jump")
    jumped.load(organisation(credits_jump_on=D3))
    jumped.build([D1, D2, D3])
    row = frame(jumped, reconcile.credits_vs_activity, D3, TOL).iloc[0]
    assert row.usage_delta_usd == pytest.approx(28.75)
    assert row.difference_usd == pytest.approx(25.0)
    assert row.abs_difference_usd > row.tolerance_usd


def test_credits_between_snapshots_names_days_never_loaded(tmp_path):
    house = FixtureWarehouse(tmp_path)
    house.load(organisation(), days={D1, D3})
    house.build([D1, D3])
    row = frame(house, reconcile.credits_vs_activity, D3, TOL).iloc[0]
    assert row.previous_snapshot_date.date() == D1
    assert row.missing_day_count == 1 and row.missing_days == D2.isoformat()
    assert row.usage_delta_usd == pytest.approx(7.5)  # two days of usage ...
    assert row.activity_usage_usd == pytest.approx(3.75)  # ... one day of loaded activity


def test_a_late_snapshot_is_never_compared_and_the_pair_says_why(warehouse):
    assert frame(warehouse, reconcile.snapshot_pair, D2, "/credits").previous_date == D1
    with connect(warehouse.path) as con:  # D2's snapshot fetched three days after D2 ended: late
        con.execute("update raw.credits set fetched_at = fetched_at + interval 3 day where partition_date = ?", [D2])
        con.execute("update raw.keys set fetched_at = fetched_at + interval 3 day where partition_date = ?", [D2])
    for endpoint, function in (("/credits", reconcile.credits_vs_activity),
                               ("/keys", reconcile.key_usage_vs_activity)):
        pair = frame(warehouse, reconcile.snapshot_pair, D2, endpoint)
        assert (pair.timing, pair.compared) == ("late", False)
        assert f"snapshot of {D2} (late: fetched {D2 + timedelta(days=4)} 00:10 UTC" in pair.skip_reason
        assert frame(warehouse, function, D2, TOL).empty
        # D3 passes over the late D2 to D1, and its delta spans two days of activity.
        after = frame(warehouse, reconcile.snapshot_pair, D3, endpoint)
        assert (after.compared, after.previous_date, after.skip_reason) == (True, D1, None)
        assert f"passing over the {endpoint} snapshot of {D2} (late" in after.note
    row = frame(warehouse, reconcile.credits_vs_activity, D3, TOL).iloc[0]
    assert (row.previous_snapshot_date.date(), row.usage_delta_usd, row.activity_usage_usd) == \
        (D1, pytest.approx(7.5), pytest.approx(7.5))
    keys = frame(warehouse, reconcile.key_usage_vs_activity, D3, TOL).set_index("api_key_name")
    assert keys.loc["a-web", "usage_delta_usd"] == pytest.approx(4.0) == keys.loc["a-web", "activity_usage_usd"]


def test_an_early_snapshot_and_the_optional_lag_limit(warehouse):
    with connect(warehouse.path) as con:  # fetched before D2 ended
        con.execute("update raw.credits set fetched_at = fetched_at - interval 1 hour where partition_date = ?", [D2])
    pair = frame(warehouse, reconcile.snapshot_pair, D2, "/credits")
    assert (pair.timing, pair.compared) == ("early", False) and "early" in pair.skip_reason
    assert frame(warehouse, reconcile.snapshot_pair, D3, "/credits", Tolerances(snapshot_max_lag_hours=0.1)) \
        .skip_reason.endswith("(snapshot_max_lag_hours)")  # fetched at 00:10, 0.17 hours after the day
    assert frame(warehouse, reconcile.snapshot_pair, D3, "/credits", Tolerances(snapshot_max_lag_hours=1)).compared


def test_a_snapshot_fetched_the_next_day_counts_that_days_spend_out_of_its_end_of_day_usage(tmp_path):
    house = FixtureWarehouse(tmp_path)
    rows = organisation()
    # Fetched at 09:00 the next day, the way the real API answers: "now" includes 9 hours of the next day's spend.
    partial = {"a-web": 0.3, "beta-api": 0.1}
    for index, (day, item) in enumerate(rows.keys):
        rows.keys[index] = (day, {**item, "usage": item["usage"] + partial[item["name"]],
                                  "usage_daily": partial[item["name"]],
                                  "_fetched": datetime.combine(day + timedelta(days=1), time(9), tzinfo=UTC)})
    rows.credits = [(day, credits, usage + 0.4, datetime.combine(day + timedelta(days=1), time(9), tzinfo=UTC))
                    for day, credits, usage, _ in rows.credits]
    house.load(rows)
    house.build([D1, D2, D3])
    row = frame(house, reconcile.credits_vs_activity, D2, TOL).iloc[0]
    assert row.usage_delta_usd == pytest.approx(3.75) and row.difference_usd == pytest.approx(0.0, abs=1e-9)
    keys = frame(house, reconcile.key_usage_vs_activity, D2, TOL).set_index("api_key_name")
    assert keys.loc["a-web", "difference_usd"] == pytest.approx(0.0, abs=1e-9)
    balance = house.rows("select * from marts.fct_credit_balance where as_of_date = ?", [D2])[0]
    assert balance["total_usage_usd"] == pytest.approx(100.0 + 3.75)  # the end of D2, not 09:00 of D3
    assert balance["snapshot_balance_usd"] == pytest.approx(1000.0 - 103.75 - 0.4)
    assert (balance["snapshot_timing"], balance["topup_usd"]) == ("on_time", 0.0)


def test_a_backfill_compares_no_snapshot_and_leaves_the_late_balances_unknown(tmp_path):
    """Every snapshot of a three-day backfill was fetched at once, after D3 ended: only D3's is on time."""
    house = FixtureWarehouse(tmp_path)
    rows = organisation()
    now = datetime.combine(D3 + timedelta(days=1), time(10), tzinfo=UTC)
    last_keys = {item["name"]: item for day, item in rows.keys if day == D3}
    rows.keys = [(day, {**last_keys[item["name"]], "usage_daily": 0.0, "_fetched": now}) for day, item in rows.keys]
    # a top-up of 50 between D1 and now: every snapshot shows it, none can date it
    rows.credits = [(day, 1050.0, 107.5, now) for day, *_ in rows.credits]
    house.load(rows)
    house.build([D1, D2, D3])
    for day in (D2, D3):
        for endpoint in ("/credits", "/keys"):
            assert not frame(house, reconcile.snapshot_pair, day, endpoint).compared
        assert frame(house, reconcile.credits_vs_activity, day, TOL).empty
        assert frame(house, reconcile.key_usage_vs_activity, day, TOL).empty
    assert "no earlier /credits snapshot describes the end of its day" in \
        frame(house, reconcile.snapshot_pair, D3, "/credits").skip_reason
    balances = {r["as_of_date"]: r for r in house.rows("select * from marts.fct_credit_balance")}
    for day in (D1, D2):
        late = balances[day]
        assert (late["snapshot_timing"], late["is_late_snapshot"]) == ("late", True)
        assert (late["balance_usd"], late["total_usage_usd"], late["runway_days"]) == (None, None, None)
        assert late["snapshot_balance_usd"] == pytest.approx(1050.0 - 107.5)
    yesterday = balances[D3]
    assert (yesterday["snapshot_timing"], yesterday["balance_usd"]) == ("on_time", pytest.approx(1050.0 - 107.5))
    assert yesterday["runway_days"] == pytest.approx((1050.0 - 107.5) / (3.75 * 2 / 3))
    # The previous snapshot describes "now" as well: the top-up is unknown, not 0.
    assert (yesterday["topup_usd"], yesterday["usage_delta_usd"]) == (None, None)


def test_key_usage_deltas_against_activity(warehouse):
    rows = frame(warehouse, reconcile.key_usage_vs_activity, D2, TOL).set_index("api_key_name")
    web, beta = rows.loc["a-web"], rows.loc["beta-api"]
    assert (web.usage_delta_usd, web.activity_usage_usd) == pytest.approx((2.0, 2.0))
    assert (web.byok_delta_usd, web.activity_byok_usd) == pytest.approx((0.5, 0.5))
    assert beta.difference_usd == pytest.approx(0.0, abs=1e-9)
    assert web.tolerance_usd == pytest.approx(0.01 + 0.01 * 2.0)
    with connect(warehouse.path) as con:  # the key's lifetime usage grew by 0.5 more than its activity
        con.execute("update raw.keys set payload = json_merge_patch(payload, '{\"usage\": 6.5}') "
                    "where partition_date = ? and key_hash = ?", [D2, key_hash("beta-api")])
    beta = frame(warehouse, reconcile.key_usage_vs_activity, D2, TOL).set_index("api_key_name").loc["beta-api"]
    assert beta.difference_usd == pytest.approx(0.5)
    assert beta.abs_difference_usd > beta.tolerance_usd


def test_per_request_cost_is_empty_without_records_and_measured_apart_from_estimated(warehouse):
    assert frame(warehouse, reconcile.per_request_vs_activity, D2, TOL).empty
    with connect(warehouse.path) as con:
        con.executemany("insert into marts.fct_generations (generation_id, usage_date, project, cost_usd, "
                        "byok_cost_usd, is_cost_measured) values (?, ?, ?, ?, ?, ?)",
                        [("g1", D2, "alpha", 1.0, 0.4, True), ("g2", D2, "alpha", 0.5, 0.1, False),
                         ("g3", D2, "beta", 2.0, None, True)])
    rows = frame(warehouse, reconcile.per_request_vs_activity, D2, TOL).set_index("project")
    alpha, beta = rows.loc["alpha"], rows.loc["beta"]
    assert (alpha.records, alpha.measured_records) == (2, 1)
    assert (alpha.measured_cost_usd, alpha.estimated_cost_usd, alpha.per_request_cost_usd) == \
        pytest.approx((1.0, 0.5, 1.5))
    assert (alpha.measured_byok_usd, alpha.estimated_byok_usd) == pytest.approx((0.4, 0.1))
    assert alpha.estimated_share == pytest.approx(1 / 3)
    # credits against credits (2.0), BYOK against BYOK (0.5): never mixed
    assert (alpha.activity_spend_usd, alpha.activity_byok_usd) == pytest.approx((2.0, 0.5))
    assert (alpha.allowed_usd, alpha.byok_allowed_usd) == pytest.approx((2.0 + 0.01, 0.5 + 0.01))
    assert beta.measured_cost_usd > beta.allowed_usd  # 2.0 measured vs 1.0 of activity


def test_endpoint_freshness_missing_landed_and_permanent_gap(warehouse):
    expected = ("/activity", "/credits", "/keys")
    rows = frame(warehouse, reconcile.endpoint_freshness, D2, expected).set_index("endpoint")
    assert set(rows.index) == {*expected, PER_KEY_ACTIVITY}  # account activity had rows, so per-key is required
    assert set(rows.status) == {"missing"}
    with connect(warehouse.path) as con:
        for endpoint, params in (("/activity", '{"date": "x"}'), ("/activity", '{"api_key_hash": "h", "date": "x"}'),
                                 ("/credits", "{}")):
            con.execute("insert into meta.landed_files (partition_date, run_id, batch, landing_file, endpoint, "
                        "request_params, fetched_at, sha256, item_count) values (?, 'r', 'b', 'f', ?, ?, now(), 's', 1)",
                        [D2, endpoint, params])
    rows = frame(warehouse, reconcile.endpoint_freshness, D2, expected).set_index("endpoint")
    assert rows.status.to_dict() == {"/activity": "landed", PER_KEY_ACTIVITY: "landed", "/credits": "landed",
                                     "/keys": "missing"}
    gap_day = D1 - timedelta(days=40)
    with connect(warehouse.path) as con:
        con.execute("insert into meta.extraction_gaps (partition_date, endpoint, reason, run_id) "
                    "values (?, '/activity', 'outside the window', 'r')", [gap_day])
        assert reconcile.is_permanent_gap(con, gap_day) and not reconcile.is_permanent_gap(con, D2)
    rows = frame(warehouse, reconcile.endpoint_freshness, gap_day, expected)
    assert set(rows.endpoint) == set(expected)  # no account activity: per-key not required
    assert set(rows.status) == {"permanent_gap"}


def test_history_marks_missing_days_and_records_those_out_of_window_as_permanent_gaps(tmp_path):
    house = FixtureWarehouse(tmp_path)
    house.load(organisation(), days={D1, D3})
    history = frame(house, reconcile.history_completeness, D3, 30)
    assert [(d.date(), s) for d, s in zip(history.usage_date, history.status, strict=True)] == [
        (D1, "loaded"), (D2, "missing"), (D3, "loaded")]
    with connect(house.path) as con:
        assert reconcile.record_unreachable_gaps(con, D3, 30, "run-1") == []  # D2 can still be fetched
        assert reconcile.record_unreachable_gaps(con, D3, 1, "run-1") == [D2]  # a 1-day window: D2 is gone
        assert reconcile.record_unreachable_gaps(con, D3, 1, "run-2") == []  # recorded once
        reason, run_id = con.execute("select reason, run_id from meta.extraction_gaps where partition_date = ?",
                                     [D2]).fetchone()
    assert "never loaded" in reason and run_id == "run-1"
    history = frame(house, reconcile.history_completeness, D3, 30)
    assert list(history.status) == ["loaded", "permanent_gap", "loaded"]


def test_the_gate_says_which_values_each_reconciliation_compared_and_why_a_snapshot_was_skipped(warehouse):
    from openrouter_spend.quality.config import QualityConfig
    from openrouter_spend.quality.reconcile import reconciliation_datasets

    with connect(warehouse.path) as con:
        con.execute("update raw.credits set fetched_at = fetched_at + interval 3 day where partition_date = ?", [D3])
        checks = {check.check_id: check for dataset in reconciliation_datasets(con, D3, QualityConfig())
                  for check in dataset.checks}
    credits = checks["reconcile.credits_vs_activity:usage_delta_matches_activity"]
    assert credits.compared_values == "skipped"
    assert credits.skip_reason.startswith(f"the /credits snapshot of {D3} (late: fetched")
    keys = checks["reconcile.key_usage_vs_activity:usage_delta_matches_activity"]
    assert (keys.compared_values, keys.skip_reason) == ("measured", None)
    assert checks["reconcile.marts_vs_account:spend_matches_account"].compared_values == "measured"
    per_request = {name.split(":")[1]: check for name, check in checks.items() if "per_request" in name}
    assert {name: (c.compared_values, c.severity) for name, c in per_request.items()} == {
        "measured_cost_within_activity": ("measured", "error"),
        "measured_byok_within_activity": ("measured", "error"),
        "estimated_cost_within_activity": ("estimated", "warning")}
