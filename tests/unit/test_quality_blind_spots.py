"""rpt_blind_spots_daily on fixture rows: BYOK share, per-request coverage (NULL vs 0), unattributed spend, gaps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import FixtureWarehouse
from test_quality_reconcile import D1, D2, D3, organisation

from openrouter_spend.warehouse import connect, marts


@pytest.fixture
def warehouse(tmp_path):
    house = FixtureWarehouse(tmp_path)
    house.load(organisation())
    house.build([D1, D2, D3])
    return house


def rebuild_blind_spots(house: FixtureWarehouse, days) -> None:
    """Rebuild only this mart, so rows written straight into fct_generations are what it reads."""
    mart = next(mart for mart in marts.MARTS if mart.name == "rpt_blind_spots_daily")
    with connect(house.path) as con:
        marts._rebuild_mart(con, mart, list(days), replace_all=False)


def spots(house: FixtureWarehouse, day) -> dict[str, dict]:
    return {row["project"]: row for row in house.rows(
        "select * from marts.rpt_blind_spots_daily where usage_date = ?", [day])}


def test_without_per_request_data_coverage_is_unknown_and_byok_and_unattributed_are_shown(warehouse):
    rows = spots(warehouse, D2)
    assert set(rows) == {"*", "alpha", "beta", "(unowned)"}
    account = rows["*"]
    assert (account["spend_usd"], account["byok_spend_usd"], account["total_spend_usd"]) == pytest.approx(
        (3.75, 0.5, 4.25))
    assert account["requests"] == 18
    assert account["byok_spend_share"] == pytest.approx(0.5 / 4.25)
    assert account["per_request_requests"] is None and account["per_request_spend_coverage_share"] is None
    assert account["per_request_request_coverage_share"] is None and account["has_per_request_data"] is False
    assert account["unattributed_spend_usd"] == pytest.approx(0.75)
    assert rows["(unowned)"]["unattributed_spend_usd"] == pytest.approx(0.75)
    assert rows["alpha"]["unattributed_spend_usd"] == 0
    assert account["blind_spots"] == ["no per-request data", "BYOK spend estimated at market rates",
                                      "spend not attributed to any listed key"]
    assert rows["beta"]["byok_spend_share"] == 0 and rows["beta"]["blind_spots"] == ["no per-request data"]
    assert account["gap_days_30d"] == 0 and account["gap_dates"] == []
    assert not spots(warehouse, D1)["*"]["blind_spots"]  # the baseline day spent nothing


def test_per_request_coverage_is_a_share_once_records_exist_and_zero_for_projects_without(warehouse):
    with connect(warehouse.path) as con:
        con.executemany("insert into marts.fct_generations (generation_id, usage_date, project, cost_usd) "
                        "values (?, ?, ?, ?)", [("g1", D2, "alpha", 1.0), ("g2", D2, "alpha", 0.5)])
    rebuild_blind_spots(warehouse, [D2, D3])
    rows = spots(warehouse, D2)
    alpha, beta, account = rows["alpha"], rows["beta"], rows["*"]
    assert alpha["per_request_requests"] == 2 and alpha["has_per_request_data"] is True
    assert alpha["per_request_request_coverage_share"] == pytest.approx(2 / 10)
    assert alpha["per_request_spend_coverage_share"] == pytest.approx(1.5 / 2.5)
    assert "no per-request data" not in alpha["blind_spots"]
    assert beta["per_request_requests"] == 0 and beta["per_request_spend_coverage_share"] == 0  # known: none
    assert "no per-request data" in beta["blind_spots"]
    assert account["per_request_request_coverage_share"] == pytest.approx(2 / 18)
    assert account["per_request_spend_coverage_share"] == pytest.approx(1.5 / 4.25)
    assert spots(warehouse, D3)["alpha"]["per_request_requests"] is None  # no records that day: unknown


def test_gap_days_of_the_last_30_days_are_counted_and_listed(warehouse):
    gap, old_gap = D1 - timedelta(days=3), D1 - timedelta(days=40)
    with connect(warehouse.path) as con:
        con.executemany("insert into meta.extraction_gaps (partition_date, endpoint, reason, run_id) "
                        "values (?, '/activity', 'outside the window', 'r')", [[gap], [old_gap]])
    warehouse.rebuild()
    account = spots(warehouse, D2)["*"]
    assert account["gap_days_30d"] == 1 and account["gap_dates"] == [gap]
    assert "days never captured in the last 30 days" in account["blind_spots"]
    assert spots(warehouse, D2)["alpha"]["gap_days_30d"] == 1


def test_incremental_build_equals_a_full_rebuild(warehouse, tmp_path):
    incremental = warehouse.rows("select * from marts.rpt_blind_spots_daily order by all")
    warehouse.rebuild()
    assert warehouse.rows("select * from marts.rpt_blind_spots_daily order by all") == incremental
