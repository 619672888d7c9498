"""rpt_savings_opportunities on fixture rows with hand-computed caching and price-change dollars."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.quality import datasets, metrics
from openrouter_spend.quality.config import QualityConfig
from openrouter_spend.warehouse import connect
from openrouter_spend.warehouse.marts import MARTS, affected_days

PRIOR = DAY - timedelta(days=1)
MTOK = 1_000_000


def _caching_rows() -> RawRows:
    rows = RawRows()
    for day in (PRIOR, DAY):
        rows.key(day, "a1").key(day, "beta-1", "ws-beta")
        # Cache reads cost 0.3 instead of 3.0: 2.7 USD saved per 1M cached prompt tokens.
        rows.price(day, "vendor/cached", 3.0, 15.0, cache_read_per_mtok=0.3)
        rows.price(day, "vendor/plain", 1.0, 2.0)
    rows.use(PRIOR, "a1", "vendor/cached", "ProviderA", requests=10, usage=2.0, prompt=MTOK, cached=400_000)
    rows.use(DAY, "a1", "vendor/cached", "ProviderA", requests=10, usage=5.0, prompt=2 * MTOK, cached=500_000)
    rows.use(DAY, "a1", "vendor/cached", "ProviderB", requests=10, usage=1.0, prompt=MTOK, cached=MTOK)
    rows.use(DAY, "a1", "vendor/plain", "ProviderA", requests=10, usage=1.0, prompt=MTOK)
    # 100 uncached tokens a day: 100 × 2.7e-6 ÷ 2 days × 30 = $0.004 a month, under the $0.01 floor.
    rows.use(DAY, "beta-1", "vendor/cached", "ProviderA", requests=1, usage=0.01, prompt=1000, cached=900)
    return rows


@pytest.fixture
def caching(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(_caching_rows())
    warehouse.build([PRIOR, DAY])
    return warehouse


def _opportunities(warehouse, kind, day=DAY):
    return warehouse.rows("select * from marts.rpt_savings_opportunities where opportunity_kind = ? "
                          "and usage_date = ? order by project, model_permaslug", [kind, day])


def test_caching_left_unused_is_an_upper_bound_at_the_seven_day_run_rate(caching):
    (row,) = _opportunities(caching, "prompt_caching")
    assert (row["project"], row["budget_owner"], row["api_key_hash"], row["model_permaslug"], row["provider_name"]) \
        == ("alpha", "Ann Owner", key_hash("a1"), "vendor/cached", None)
    # Both providers of the day: 3M prompt tokens, 0.5M + 1M of them read from the cache.
    assert (row["prompt_tokens"], row["cached_tokens"]) == (3 * MTOK, 1_500_000)
    assert row["cached_share"] == pytest.approx(0.5)
    assert (row["prompt_price_per_mtok_usd"], row["cache_read_price_per_mtok_usd"]) == \
        (pytest.approx(3.0), pytest.approx(0.3))
    assert row["saved_today_usd"] == pytest.approx(1.5 * 2.7)
    assert row["missed_saving_today_usd"] == pytest.approx(1.5 * 2.7)
    # Uncached tokens: 0.6M on PRIOR ($1.62) and 1.5M today ($4.05), over 2 loaded days, × 30.
    assert row["loaded_days_7d"] == 2
    assert row["monthly_saving_usd"] == pytest.approx((1.62 + 4.05) / 2 * 30)
    assert row["bound_kind"] == "upper_bound"
    assert "upper bound" in row["basis"] and "2 loaded day(s)" in row["basis"]


def test_the_first_day_runs_at_its_own_rate(caching):
    (row,) = _opportunities(caching, "prompt_caching", PRIOR)
    assert (row["cached_share"], row["saved_today_usd"]) == (pytest.approx(0.4), pytest.approx(0.4 * 2.7))
    assert row["monthly_saving_usd"] == pytest.approx(0.6 * 2.7 * 30)


def test_a_model_without_a_cache_price_and_a_trivial_saving_give_no_row(caching):
    rows = caching.rows("select project, model_permaslug from marts.rpt_savings_opportunities")
    assert ("alpha", "vendor/plain") not in {(r["project"], r["model_permaslug"]) for r in rows}
    assert "beta" not in {r["project"] for r in rows}
    # Constant prices: no price_change row either.
    assert not caching.rows("select * from marts.rpt_savings_opportunities where opportunity_kind = 'price_change'")


FIRST = DAY
CHANGE = DAY + timedelta(days=10)


def _price_rows() -> RawRows:
    rows = RawRows()
    for offset in range(12):
        day = FIRST + timedelta(days=offset)
        changed = day >= CHANGE
        rows.key(day, "a1").key(day, "beta-1", "ws-beta")
        rows.price(day, "vendor/pro", 2.0, 6.0 if changed else 10.0)
        rows.price(day, "vendor/hot", 1.5 if changed else 1.0, 4.0)
        rows.price(day, "vendor/steady", 1.0, 2.0)
        if offset >= 4:
            rows.use(day, "a1", "vendor/pro", "ProviderA", requests=10, usage=5.0, prompt=MTOK, completion=500_000)
            rows.use(day, "a1", "vendor/steady", "ProviderA", requests=10, usage=5.0, prompt=MTOK)
    rows.use(CHANGE, "beta-1", "vendor/hot", "ProviderA", requests=10, usage=3.0, prompt=2 * MTOK, completion=1000)
    return rows


@pytest.fixture
def price_change(tmp_path):
    """Twelve days loaded and built one at a time, as the daily DAG does."""
    warehouse = FixtureWarehouse(tmp_path)
    rows = _price_rows()
    for offset in range(12):
        day = FIRST + timedelta(days=offset)
        warehouse.load(rows, {day})
        warehouse.build([day])
    return warehouse


def test_a_price_drop_and_a_rise_at_the_projects_current_volume(price_change):
    by_model = {r["model_permaslug"]: r for r in _opportunities(price_change, "price_change", CHANGE)}
    assert set(by_model) == {"vendor/pro", "vendor/hot"}
    drop, rise = by_model["vendor/pro"], by_model["vendor/hot"]
    # alpha: 0.5M completion tokens on each of the 7 days ending CHANGE, completion 10 -> 6 USD/Mtok:
    # -4 × 3.5M tokens = -$14 a week, ÷ 7 loaded days × 30 = -$60 a month.
    assert (drop["project"], drop["api_key_hash"], drop["price_changed_on"], drop["price_direction"]) == \
        ("alpha", None, CHANGE, "drop")
    assert (drop["old_completion_price_per_mtok_usd"], drop["new_completion_price_per_mtok_usd"]) == \
        (pytest.approx(10.0), pytest.approx(6.0))
    assert (drop["prompt_tokens_7d"], drop["completion_tokens_7d"], drop["loaded_days_7d"]) == (7 * MTOK, 3_500_000, 7)
    assert drop["monthly_price_effect_usd"] == pytest.approx(-60.0)
    assert drop["monthly_saving_usd"] == pytest.approx(60.0)
    assert drop["bound_kind"] == "estimate"
    # beta: 2M prompt tokens on CHANGE only, prompt 1.0 -> 1.5: +$1.00 in the window, ÷ 7 × 30.
    assert (rise["project"], rise["budget_owner"], rise["price_direction"]) == ("beta", "Bob Owner", "rise")
    assert (rise["old_prompt_price_per_mtok_usd"], rise["new_prompt_price_per_mtok_usd"]) == \
        (pytest.approx(1.0), pytest.approx(1.5))
    assert rise["monthly_price_effect_usd"] == pytest.approx(30 / 7)
    assert rise["monthly_saving_usd"] == pytest.approx(30 / 7)


def test_a_price_change_is_reported_from_its_first_day_and_not_before(price_change):
    assert not _opportunities(price_change, "price_change", CHANGE - timedelta(days=1))
    # The next day reads the same 7 loaded days shifted by one: alpha's volume is unchanged (0.5M a day).
    (after,) = [r for r in _opportunities(price_change, "price_change", CHANGE + timedelta(days=1))
                if r["model_permaslug"] == "vendor/pro"]
    assert after["monthly_price_effect_usd"] == pytest.approx(-60.0)


def test_day_by_day_savings_equal_a_full_rebuild(price_change):
    def snapshot():
        return sorted(price_change.rows("select * from marts.rpt_savings_opportunities"), key=repr)

    incremental = snapshot()
    assert incremental
    price_change.rebuild()
    assert snapshot() == incremental


def test_a_changed_day_reaches_the_seven_day_run_rates_and_the_thirty_day_price_windows():
    (mart,) = [mart for mart in MARTS if mart.name == "rpt_savings_opportunities"]
    candidates = [DAY + timedelta(days=offset) for offset in range(40)]
    # A price version first seen on DAY is reported through DAY + 29; DAY's volume counts through DAY + 6.
    assert affected_days(mart, [DAY], candidates) == candidates[:30]


def test_the_gate_counts_a_price_change_twice_as_a_broken_grain(price_change):
    grain = "marts.rpt_savings_opportunities:grain_unique"
    with connect(price_change.path) as con:
        def grain_check():
            (dataset,) = [d for d in datasets.build_datasets(con, CHANGE, QualityConfig(), "run")
                          if any(check.check_id == grain for check in d.checks)]
            return metrics.measure(con, dataset)[grain].details

        assert grain_check()["unexpected_count"] == 0
        # The NULL api_key_hash of price_change rows is part of the grain: the same row twice breaks it.
        con.execute("insert into marts.rpt_savings_opportunities select * from marts.rpt_savings_opportunities "
                    "where usage_date = ? and opportunity_kind = 'price_change' and model_permaslug = 'vendor/hot'",
                    [CHANGE])
        assert grain_check()["unexpected_count"] == 2
