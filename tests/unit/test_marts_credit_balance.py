"""fct_credit_balance on fixture rows with hand-computed balance, top-ups, trailing burn and runway."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows

BURN = [2, 4, 6, 8, 10, 12, 14, 16, 0]
CREDITS = [100, 100, 100, 100, 150, 150, 150, 150, 150]

# as_of offset: (balance, topup, usage_delta, burn_7d_avg, days_in_avg, runway_days)
EXPECTED = {
    0: (48, None, None, 2, 1, 24),
    1: (44, 0, 4, 3, 2, 44 / 3),
    2: (38, 0, 6, 4, 3, 9.5),
    3: (30, 0, 8, 5, 4, 6),
    4: (70, 50, 10, 6, 5, 70 / 6),
    5: (58, 0, 12, 7, 6, 58 / 7),
    6: (44, 0, 14, 8, 7, 5.5),
    7: (28, 0, 16, 10, 7, 2.8),
    8: (28, 0, 0, 66 / 7, 7, 28 / (66 / 7)),
}


def test_balance_topups_trailing_burn_and_runway(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    usage = 50.0
    for offset, (burn, credits) in enumerate(zip(BURN, CREDITS, strict=True)):
        day = DAY + timedelta(days=offset)
        usage += burn
        if burn:
            rows.key(day, "k").use(day, "k", "vendor/m", requests=1, usage=burn / 2, byok=1.0)
            rows.use(day, "k", "vendor/m", "ProviderB", requests=1, usage=burn / 2)
        rows.credit(day, credits, usage)
    warehouse.load(rows)
    warehouse.build([DAY + timedelta(days=offset) for offset in range(len(BURN))])

    found = {(r["as_of_date"] - DAY).days: r for r in warehouse.rows("select * from marts.fct_credit_balance")}
    assert set(found) == set(EXPECTED)
    for offset, (balance, topup, delta, average, days, runway) in EXPECTED.items():
        row = found[offset]
        assert row["balance_usd"] == pytest.approx(balance), offset
        assert row["burn_usd"] == pytest.approx(BURN[offset]), offset
        assert row["topup_usd"] == (None if topup is None else pytest.approx(topup)), offset
        assert row["usage_delta_usd"] == (None if delta is None else pytest.approx(delta)), offset
        assert row["burn_7d_avg_usd"] == pytest.approx(average), offset
        assert row["burn_days_in_avg"] == days, offset
        assert row["runway_days"] == pytest.approx(runway), offset
    assert found[7]["projected_depletion_date"] == DAY + timedelta(days=9)
    assert found[0]["byok_spend_usd"] == pytest.approx(1.0)


def test_no_burn_means_no_runway_and_an_empty_balance_means_zero(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    day2 = DAY + timedelta(days=1)
    rows = RawRows().credit(DAY, 10, 5).credit(day2, 10, 12)
    rows.key(day2, "k").use(day2, "k", "vendor/m", requests=1, usage=7.0)
    warehouse.load(rows)
    warehouse.build([DAY, day2])

    found = {r["as_of_date"]: r for r in warehouse.rows("select * from marts.fct_credit_balance")}
    assert found[DAY]["burn_usd"] == 0
    assert found[DAY]["runway_days"] is None
    assert found[DAY]["projected_depletion_date"] is None
    assert found[day2]["balance_usd"] == pytest.approx(-2)
    assert found[day2]["runway_days"] == 0
