"""FOCUS 1.0 export of realistic days: the FinOps Foundation's focus-validator 1.0.0 (in its own virtual
environment) must accept the CSV and the Parquet file, and the money must add up to the marts without
counting anything twice."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import pytest
from digest_fixtures import query, realistic_run, skip_or_fail

from openrouter_spend.reports import focus
from openrouter_spend.warehouse import connect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def validator():
    """The validator's Python, its environment created once (skipped, or failed under CI, when impossible)."""
    try:
        return focus.ensure_validator()
    except focus.ValidatorUnavailable as exc:
        skip_or_fail(str(exc))


@pytest.fixture(scope="module")
def exported(emulated_warehouse, tmp_path_factory):
    """FOCUS files for the newest day and for the latest day with a credit top-up."""
    run = realistic_run(emulated_warehouse)
    assert run.topup_day is not None, "the emulator plants two top-ups inside the 14 days"
    folder = tmp_path_factory.mktemp("focus")
    results = {}
    with connect(run.published, read_only=True) as con:
        for day in sorted({run.newest_day, run.topup_day}):
            results[day] = focus.write_day(con, day, folder)
    return run, folder, results


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_the_validator_accepts_csv_and_parquet(exported, validator):
    _run, folder, results = exported
    for day in results:
        reports = focus.validate_day(day, folder)
        for report in reports:
            assert report.passed, report.summary()
            assert report.rows == results[day]["rows"]
            statuses = {check["status"] for check in report.checks}
            assert statuses <= {"passed", "skipped"}
            skipped = sorted(check["check"] for check in report.checks if check["status"] == "skipped")
            assert skipped == sorted(focus.SKIPPED_CHECKS)
            custom = [c for c in report.columns if c.startswith("x_")]
            checked = {check["column"] for check in report.checks}
            assert set(report.columns) - set(custom) == checked, "FOCUS columns are exactly those the validator checks"


def test_a_broken_export_fails_validation(exported, validator, tmp_path):
    _run, folder, results = exported
    day = next(iter(results))
    rows = _csv_rows(folder / f"{day.isoformat()}.csv")
    broken = tmp_path / "broken.csv"
    with open(broken, "w", newline="") as handle:
        columns = [c for c in rows[0] if c != "ChargeCategory"]
        writer = csv.DictWriter(handle, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "BillingCurrency": "DOLLARS"})
    report = focus.validate_file(broken)
    assert not report.passed
    summary = report.summary()
    assert "ChargeCategory" in summary and "BillingCurrency" in summary


def test_usage_and_purchases_add_up_to_the_marts_without_double_counting(exported):
    run, folder, results = exported
    for day, result in results.items():
        rows = _csv_rows(folder / f"{day.isoformat()}.csv")
        usage = [row for row in rows if row["ChargeCategory"] == "Usage"]
        purchases = [row for row in rows if row["ChargeCategory"] == "Purchase"]
        spend_rows, spend, byok = query(run.published, "select count(*), sum(spend_usd), sum(byok_spend_usd) "
                                                       "from marts.fct_daily_spend where usage_date = ?", [day])[0]
        topup = query(run.published, "select coalesce(topup_usd, 0) from marts.fct_credit_balance "
                                     "where as_of_date = ?", [day])[0][0]
        assert len(usage) == spend_rows
        assert len({(row["ResourceID"], row["SkuPriceId"]) for row in usage}) == spend_rows
        assert sum(float(row["EffectiveCost"]) for row in usage) == pytest.approx(spend, abs=1e-6)
        assert all(float(row["BilledCost"]) == 0 for row in usage), "usage is paid from prepaid credits"
        assert sum(float(row["x_byok_provider_billed_cost_usd"]) for row in usage) == pytest.approx(byok, abs=1e-6)
        assert {row["x_is_byok"] for row in usage if float(row["x_byok_provider_billed_cost_usd"]) > 0} == {"true"}
        assert len(purchases) == (1 if topup > 0 else 0)
        assert sum(float(row["BilledCost"]) for row in purchases) == pytest.approx(topup, abs=1e-9)
        assert all(float(row["EffectiveCost"]) == 0 for row in purchases)
        assert result["billed_cost_usd"] == pytest.approx(topup)
        assert result["effective_cost_usd"] == pytest.approx(spend, abs=1e-6)
        assert {row["ChargePeriodStart"] for row in rows} == {f"{day.isoformat()}T00:00:00Z"}
        assert {row["BillingPeriodStart"] for row in rows} == {f"{day.replace(day=1).isoformat()}T00:00:00Z"}
        assert all(c.startswith("x_") or c[0].isupper() for c in rows[0])
        with duckdb.connect() as con:
            parquet = con.execute(
                "select count(*), sum(EffectiveCost), sum(BilledCost) from read_parquet(?)",
                [str(folder / f"{day.isoformat()}.parquet")]).fetchone()
        assert parquet[0] == len(rows)
        assert parquet[1] == pytest.approx(spend, abs=1e-6) and parquet[2] == pytest.approx(topup)
    assert any(result["purchase_rows"] == 1 for result in results.values())


def test_owner_project_and_premium_travel_in_x_columns(exported):
    run, folder, _ = exported
    rows = _csv_rows(folder / f"{run.newest_day.isoformat()}.csv")
    expected = {(project, owner or "", premium) for project, owner, premium in query(
        run.published, "select distinct project, budget_owner, is_premium from marts.fct_daily_spend "
                       "where usage_date = ?", [run.newest_day])}
    found = {(row["x_project"], row["x_budget_owner"], row["x_is_premium"] == "true")
             for row in rows if row["ChargeCategory"] == "Usage"}
    assert found == expected
    assert all(row["SkuId"] == row["x_model_permaslug"] for row in rows if row["ChargeCategory"] == "Usage")
