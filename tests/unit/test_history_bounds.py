"""Reads bounded to the day give what the whole-history reads gave: the loaded days, the /keys reconciliation
across a day without a snapshot, and marts built one day at a time against the same marts rebuilt whole."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.quality import load_quality_config, reconcile
from openrouter_spend.warehouse import connect
from openrouter_spend.warehouse.marts import available_days

DAYS = [DAY + timedelta(days=offset) for offset in range(6)]

# The definition stg_loaded_days had when it typed every /activity row and /keys snapshot to list the days.
LOADED_DAYS_FROM_STAGING = """
    select usage_date from staging.stg_account_activity
    union
    select snapshot_date from staging.stg_credits
"""

# The definition the mart build's available_days had when it typed and deduplicated every /activity row.
AVAILABLE_DAYS_FROM_STAGING = """
    select usage_date from staging.stg_account_activity
    union
    select usage_date from staging.stg_activity
    union
    select snapshot_date from staging.stg_credits
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six days built one at a time: no /keys snapshot on the third, no activity on the fifth, no /credits on
    the sixth; lifetime usage on /keys grows by exactly the activity in between."""
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("bounds"))
    rows = RawRows()
    lifetime = {"busy": 10.0, "quiet": 3.0}
    spend = {"busy": [2.0, 1.25, 4.0, 0.5, 0.0, 3.0], "quiet": [0.75, 0.0, 0.0, 1.0, 0.0, 0.0]}
    for index, day in enumerate(DAYS):
        for key, amounts in spend.items():
            if amounts[index]:
                rows.use(day, key, "vendor/m", requests=index + 1, usage=amounts[index])
                lifetime[key] += amounts[index]
            if index != 2:
                rows.key(day, key, usage=lifetime[key])
        if index != 5:
            rows.credit(day, 1000.0, 100.0 + index)
    for day in DAYS:
        warehouse.load(rows, {day})
        warehouse.build([day])
    return warehouse


def test_loaded_days_are_the_days_of_account_activity_or_a_credits_snapshot(world):
    days = [r["usage_date"] for r in world.rows("select usage_date from staging.stg_loaded_days order by 1")]
    assert days == DAYS  # the fifth day by its /credits snapshot alone, the sixth by its activity alone
    with connect(world.path, read_only=True) as con:
        current = "select usage_date from staging.stg_loaded_days"
        for first, second in ((current, LOADED_DAYS_FROM_STAGING), (LOADED_DAYS_FROM_STAGING, current)):
            assert con.execute(f"select count(*) from (({first}) except all ({second}))").fetchone()[0] == 0


def test_the_days_a_build_can_build_are_the_staging_days_read_from_the_raw_partitions(world):
    with connect(world.path, read_only=True) as con:
        from_staging = {day for (day,) in con.execute(AVAILABLE_DAYS_FROM_STAGING).fetchall()}
        assert available_days(con) == from_staging == set(DAYS)


def test_key_usage_reconciles_with_the_activity_since_the_snapshot_before_a_missing_one(world):
    tolerances = load_quality_config(world.config_dir).tolerances
    with connect(world.path, read_only=True) as con:
        pair = reconcile.snapshot_pair(con, DAYS[3], "/keys", tolerances)
        frame = reconcile.key_usage_vs_activity(con, DAYS[3], tolerances, pair)
    assert pair.previous_date == DAYS[1]
    by_key = {row.api_key_hash: row for row in frame.itertuples()}
    # Activity of the third and fourth days only: the previous snapshot's own day is already in its usage.
    assert by_key[key_hash("busy")].activity_usage_usd == pytest.approx(4.0 + 0.5)
    assert by_key[key_hash("busy")].usage_delta_usd == pytest.approx(4.0 + 0.5)
    assert by_key[key_hash("quiet")].activity_usage_usd == pytest.approx(1.0)
    assert set(frame.previous_snapshot_date.dt.date) == {DAYS[1]}
    assert frame.abs_difference_usd.max() == pytest.approx(0.0, abs=1e-9)


def test_credits_reconcile_with_the_account_activity_since_the_previous_snapshot(world):
    tolerances = load_quality_config(world.config_dir).tolerances
    with connect(world.path, read_only=True) as con:
        frame = reconcile.credits_vs_activity(con, DAYS[4], tolerances)
    assert len(frame) == 1
    # The fifth day had no activity: its /credits delta of 1.0 is compared with nothing spent.
    assert frame.activity_usage_usd.iloc[0] == pytest.approx(0.0)
    assert frame.usage_delta_usd.iloc[0] == pytest.approx(1.0)


def test_marts_built_one_day_at_a_time_equal_the_whole_rebuild(world, tmp_path):
    rebuilt = world.copy_to(tmp_path / "rebuilt")
    rebuilt.rebuild()
    built, whole = world.snapshot(), rebuilt.snapshot()
    assert len(built["fct_daily_spend"]) == 5 + 2  # busy on five days, quiet on two and len(built["fct_credit_balance"]) == 5
    assert built == whole
    blind_spots = "select * from marts.rpt_blind_spots_daily order by all"
    # every day with data for the account ('*'), the five with spend for the one project (not the credits-only day)
    assert len(world.rows(blind_spots)) == 6 + 5
    assert world.rows(blind_spots) == rebuilt.rows(blind_spots)
