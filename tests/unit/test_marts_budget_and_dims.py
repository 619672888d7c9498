"""rpt_budget_status_daily, dim_api_key, dim_model and dim_annotation on fixture rows, hand-computed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from marts_fixtures import DAY, OWNERS, FixtureWarehouse, RawRows, key_hash

LAUNCH_OWNERS = OWNERS.replace("""    budgets_usd: {daily: 10, weekly: 50, monthly: 200}
""", """    budgets_usd: {daily: 10, weekly: 50, monthly: 200}
    launch_windows:
      - {start: 2026-03-04, end: 2026-03-05, velocity_multiplier: 2, description: launch}
""")


def test_budget_status_with_a_launch_window_and_a_month_end_forecast(tmp_path):
    warehouse = FixtureWarehouse(tmp_path, owners=LAUNCH_OWNERS)
    rows = RawRows()
    days = [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)]
    for day, spend in zip(days, (4.0, 6.0, 8.0), strict=True):
        rows.key(day, "k").use(day, "k", "vendor/m", requests=1, usage=spend)
    warehouse.load(rows)
    warehouse.build(days)

    status = {r["project"]: r for r in warehouse.rows(
        "select * from marts.rpt_budget_status_daily where usage_date = '2026-03-04'")}
    alpha = status["alpha"]
    assert (alpha["team"], alpha["budget_owner"], alpha["budget_owner_contact"]) == \
        ("Team A", "Ann Owner", "ann@example.com")
    # Week Mon 2 .. Sun 8 March has multipliers 1,1,2,2,1,1,1; March has 29 days at 1 and 2 at 2.
    run_rate = (4 / 1 + 6 / 1 + 8 / 2) / 3
    expected = {
        "spend_usd": 8.0, "week_to_date_spend_usd": 18.0, "month_to_date_spend_usd": 18.0,
        "velocity_multiplier": 2.0, "effective_daily_budget_usd": 20.0,
        "effective_weekly_budget_usd": 50 * 9 / 7, "effective_monthly_budget_usd": 200 * 33 / 31,
        "daily_budget_used_ratio": 0.4, "weekly_budget_used_ratio": 18 / (50 * 9 / 7),
        "monthly_budget_used_ratio": 18 / (200 * 33 / 31), "run_rate_7d_usd": run_rate,
        "days_left_in_month": 27, "forecast_month_end_spend_usd": 18 + run_rate * 28,
        "forecast_monthly_budget_ratio": (18 + run_rate * 28) / (200 * 33 / 31),
    }
    assert {k: alpha[k] for k in expected} == pytest.approx(expected)
    beta = status["beta"]
    assert (beta["spend_usd"], beta["daily_budget_usd"], beta["daily_budget_used_ratio"]) == (0, 5.0, 0)
    assert (beta["weekly_budget_used_ratio"], beta["monthly_budget_used_ratio"],
            beta["forecast_monthly_budget_ratio"]) == (None, None, None)
    assert beta["forecast_month_end_spend_usd"] == 0


def test_unused_seats_and_current_owners_in_dim_api_key(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    rows.key(DAY, "active", last_used=DAY).use(DAY, "active", "vendor/m", requests=1, usage=0.5)
    rows.key(DAY, "idle", last_used=DAY - timedelta(days=5))
    rows.key(DAY, "never", created=DAY - timedelta(days=10))
    rows.key(DAY, "fresh", created=DAY - timedelta(days=1))
    rows.key(DAY, "off", disabled=True, last_used=DAY - timedelta(days=20))
    rows.key(DAY, "expired", expires=DAY - timedelta(days=2), last_used=DAY - timedelta(days=20))
    rows.key(DAY, "beta-old", "ws-beta", last_used=DAY - timedelta(days=2))
    warehouse.load(rows)
    warehouse.build([DAY])

    keys = {r["api_key_name"]: r for r in warehouse.rows("select * from marts.dim_api_key")}
    assert {name: keys[name]["is_unused"] for name in keys} == {
        "active": False, "idle": True, "never": True, "fresh": False, "off": False, "expired": False,
        "beta-old": False,
    }
    assert (keys["idle"]["days_since_last_use"], keys["never"]["days_since_last_use"]) == (5, None)
    assert keys["idle"]["unused_after_days"] == 3
    assert keys["expired"]["is_expired"] is True
    assert (keys["beta-old"]["project"], keys["beta-old"]["budget_owner"], keys["never"]["project"]) == \
        ("beta", "Bob Owner", "alpha")
    assert keys["active"]["spend_30d_usd"] == pytest.approx(0.5)
    assert keys["active"]["last_activity_date"] == DAY
    assert keys["active"]["api_key_hash"] == key_hash("active")
    assert {r["as_of_date"] for r in keys.values()} == {DAY}


def test_dim_model_merges_free_variants_and_never_classes_routers_as_premium(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows().key(DAY, "k")
    rows.price(DAY, "vendor/big", 3.0, 15.0).price(DAY, "vendor/big:free", 0, 0)
    rows.price(DAY, "vendor/small", 0.1, 0.4).price(DAY, "openrouter/auto", "-1", "-1")
    warehouse.load(rows)
    warehouse.build([DAY])

    models = {r["model_permaslug"]: r for r in warehouse.rows("select * from marts.dim_model")}
    assert set(models) == {"vendor/big", "vendor/small", "openrouter/auto"}
    big = models["vendor/big"]
    assert (big["model"], big["has_free_variant"], big["is_premium"], big["premium_reason"]) == \
        ("vendor/big", True, True, "completion_price")
    assert big["completion_price_per_mtok_usd"] == pytest.approx(15.0)
    assert (models["vendor/small"]["is_premium"], models["vendor/small"]["premium_reason"]) == \
        (False, "below_threshold")
    auto = models["openrouter/auto"]
    assert (auto["is_premium"], auto["is_router"], auto["prompt_price_per_mtok_usd"]) == (False, True, None)


def test_dim_annotation_holds_the_current_calendar(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(RawRows().key(DAY, "k"))
    warehouse.build([DAY])
    assert warehouse.rows("select annotation_id, kind, start_date, end_date, project, signals "
                          "from marts.dim_annotation") == [{
        "annotation_id": "alpha-release", "kind": "release", "start_date": date(2026, 3, 2),
        "end_date": date(2026, 3, 4), "project": "alpha", "signals": ["spend"]}]
