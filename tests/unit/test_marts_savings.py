"""rpt_savings_opportunities on fixture rows with hand-computed caching, price-change, provider-spread and
premium-vs-standard dollars."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash
from test_requests_marts import metadata, usage, wilson

from openrouter_spend.ingest import requests_log
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


@pytest.fixture(scope="module")
def caching(tmp_path_factory):
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("caching"))
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


@pytest.fixture(scope="module")
def price_change(tmp_path_factory):
    """Twelve days loaded and built one at a time, as the daily DAG does (shared: a test that changes it copies it)."""
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("price-change"))
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


def test_day_by_day_savings_equal_a_full_rebuild(price_change, tmp_path):
    price_change = price_change.copy_to(tmp_path / "copy")

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


def test_the_gate_counts_a_price_change_twice_as_a_broken_grain(price_change, tmp_path):
    price_change = price_change.copy_to(tmp_path / "copy")
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


def _spread_rows() -> RawRows:
    rows = RawRows()
    for day in (PRIOR, DAY):
        rows.key(day, "a1").key(day, "a2-byok").key(day, "a3-mixed")
        rows.price(day, "vendor/open", 1.0, 2.0).price(day, "vendor/solo", 1.0, 1.0)
        # vendor/open: B is cheaper within 2 uptime points of A; C is cheapest but far less available; D is
        # down (status -1); E is dearer.
        rows.endpoint(day, "vendor/open", "ProviderA", 1.0, 2.0, 99.5)
        rows.endpoint(day, "vendor/open", "ProviderB", 0.6, 1.5, 98.0)
        rows.endpoint(day, "vendor/open", "ProviderC", 0.2, 0.5, 90.0)
        rows.endpoint(day, "vendor/open", "ProviderD", 0.1, 0.1, 99.9, status=-1)
        rows.endpoint(day, "vendor/open", "ProviderE", 3.0, 3.0, 100.0)
        # vendor/solo: the only cheaper provider is outside the uptime margin.
        rows.endpoint(day, "vendor/solo", "ProviderA", 1.0, 1.0, 99.5)
        rows.endpoint(day, "vendor/solo", "ProviderC", 0.1, 0.1, 95.0)
    rows.use(PRIOR, "a1", "vendor/open", "ProviderA", requests=10, usage=1.4, prompt=MTOK, completion=200_000)
    rows.use(DAY, "a1", "vendor/open", "ProviderA", requests=10, usage=2.8, prompt=2 * MTOK, completion=400_000)
    rows.use(DAY, "a1", "vendor/solo", "ProviderA", requests=10, usage=2.0, prompt=MTOK, completion=MTOK)
    # Every request of a2-byok runs on the key's own ProviderA contract.
    rows.use(DAY, "a2-byok", "vendor/open", "ProviderA", requests=10, usage=0.05, byok=1.0, prompt=MTOK,
             completion=0, byok_requests=10)
    # 4 of a3-mixed's 10 requests are BYOK: 40% of its gap is pinned.
    rows.use(DAY, "a3-mixed", "vendor/open", "ProviderA", requests=10, usage=0.6, byok=0.4, prompt=MTOK,
             completion=0, byok_requests=4)
    return rows


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("spread"))
    warehouse.load(_spread_rows())
    warehouse.build([PRIOR, DAY])
    return warehouse


def test_the_spread_to_the_cheapest_provider_with_comparable_uptime(spread):
    rows = {r["api_key_hash"]: r for r in _opportunities(spread, "provider_price_spread")}
    row = rows[key_hash("a1")]
    assert (row["project"], row["model_permaslug"], row["provider_name"], row["alternative_provider_name"]) == \
        ("alpha", "vendor/open", "ProviderA", "ProviderB")
    assert (row["used_uptime_last_1d"], row["alternative_uptime_last_1d"]) == (99.5, 98.0)
    # 3M prompt and 0.6M completion tokens over 2 loaded days: $4.20 at A (1.0 / 2.0), $2.70 at B (0.6 / 1.5).
    assert (row["prompt_tokens_7d"], row["completion_tokens_7d"], row["loaded_days_7d"]) == (3 * MTOK, 600_000, 2)
    assert (row["current_cost_7d_usd"], row["alternative_cost_7d_usd"]) == (pytest.approx(4.2), pytest.approx(2.7))
    assert row["monthly_saving_usd"] == pytest.approx(1.5 / 2 * 30)
    assert (row["bound_kind"], row["pinned_reason"], row["pinned_monthly_gap_usd"]) == ("estimate", None, 0)
    assert "within 2 uptime points" in row["basis"]


def test_byok_traffic_is_pinned_labelled_and_not_counted(spread):
    row = {r["api_key_hash"]: r for r in _opportunities(spread, "provider_price_spread")}[key_hash("a2-byok")]
    # 1M prompt tokens: $1.00 at A, $0.60 at B; the $0.40 gap over 2 loaded days is shown, not counted.
    assert (row["monthly_saving_usd"], row["bound_kind"], row["pinned_reason"]) == (0, "not_counted", "byok")
    assert row["pinned_monthly_gap_usd"] == pytest.approx(0.4 / 2 * 30)
    assert "pinned" in row["basis"]


def test_the_byok_share_of_a_keys_gap_is_pinned_and_the_rest_counted(spread):
    row = {r["api_key_hash"]: r for r in _opportunities(spread, "provider_price_spread")}[key_hash("a3-mixed")]
    # The $0.40 gap of 1M prompt tokens: 60% counted, 40% pinned, over 2 loaded days × 30.
    assert (row["bound_kind"], row["pinned_reason"]) == ("estimate", "byok")
    assert row["monthly_saving_usd"] == pytest.approx(0.4 * 0.6 / 2 * 30)
    assert row["pinned_monthly_gap_usd"] == pytest.approx(0.4 * 0.4 / 2 * 30)


def test_a_cheaper_provider_outside_the_uptime_margin_is_no_saving(spread):
    rows = _opportunities(spread, "provider_price_spread")
    assert "vendor/solo" not in {r["model_permaslug"] for r in rows}


def _log(generation_id: str, workflow: str, model: str, cost: float, accepted: bool | None) -> dict:
    line = {"generation_id": generation_id, "created_at": f"{DAY}T10:00:00Z", "workflow": workflow,
            "requested_model": model, "openrouter_metadata": metadata(("ProviderA", model, 200), requested=model),
            "usage": usage(cost, 1000, 100)}
    return line if accepted is None else {**line, "accepted": accepted}


def _workflow_lines() -> list[dict]:
    lines = []
    # chat: premium vendor/pro 9 of 10 accepted at $0.05 each; standard vendor/lite 18 of 20 at $0.01 each,
    # and 2 more without a verdict.
    lines += [_log(f"p{i}", "chat", "vendor/pro", 0.05, i < 9) for i in range(10)]
    lines += [_log(f"s{i}", "chat", "vendor/lite", 0.01, i < 18) for i in range(20)]
    lines += [_log(f"n{i}", "chat", "vendor/lite", 0.01, None) for i in range(2)]
    # batch: premium 10 of 10, standard only 5 of 10: far outside the 5-point margin.
    lines += [_log(f"bp{i}", "batch", "vendor/pro", 0.05, True) for i in range(10)]
    lines += [_log(f"bs{i}", "batch", "vendor/lite", 0.01, i < 5) for i in range(10)]
    return lines


@pytest.fixture(scope="module")
def workflows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("premium")
    warehouse = FixtureWarehouse(tmp)
    rows = RawRows()
    rows.key(DAY, "a-web").price(DAY, "vendor/pro", 3.0, 20.0).price(DAY, "vendor/lite", 0.2, 0.8)
    rows.use(DAY, "a-web", "vendor/pro", "ProviderA", requests=20, usage=1.0)
    rows.use(DAY, "a-web", "vendor/lite", "ProviderA", requests=32, usage=0.32)
    warehouse.load(rows)
    (tmp / "requests").mkdir()
    (tmp / "requests" / "a-web.jsonl").write_text(
        "".join(json.dumps({**line, "api_key_hash": key_hash("a-web")}) + "\n" for line in _workflow_lines()))
    with connect(warehouse.path) as con:
        requests_log.ingest(con, tmp / "requests", quarantine_dir=tmp / "quarantine")
    warehouse.build([DAY])
    return warehouse


def test_premium_results_a_standard_model_is_accepted_for_as_often(workflows):
    (row,) = _opportunities(workflows, "premium_vs_standard")
    assert (row["project"], row["workflow"], row["api_key_hash"], row["model_permaslug"],
            row["alternative_model_permaslug"]) == ("alpha", "chat", None, "vendor/pro", "vendor/lite")
    assert (row["premium_requests_7d"], row["premium_accepted_7d"], row["standard_requests_7d"],
            row["standard_accepted_7d"]) == (10, 9, 20, 18)
    assert (row["premium_acceptance_rate"], row["standard_acceptance_rate"]) == (pytest.approx(0.9), pytest.approx(0.9))
    assert row["verdict_coverage"] == pytest.approx(30 / 32)
    assert (row["premium_cost_per_accepted_usd"], row["standard_cost_per_accepted_usd"]) == \
        (pytest.approx(0.5 / 9), pytest.approx(0.2 / 18))
    # $0.50 of premium less its 9 accepted results at $0.2 / 18 each = $0.40 on 1 loaded day, × 30.
    assert (row["current_cost_7d_usd"], row["alternative_cost_7d_usd"]) == (pytest.approx(0.5), pytest.approx(0.1))
    assert row["monthly_saving_usd"] == pytest.approx(12.0)
    low, high = wilson(0.9, 20)
    assert (row["standard_acceptance_ci_low"], row["standard_acceptance_ci_high"]) == \
        (pytest.approx(low), pytest.approx(high))
    assert (row["premium_acceptance_ci_low"], row["premium_acceptance_ci_high"]) == \
        tuple(pytest.approx(bound) for bound in wilson(0.9, 10))
    assert row["monthly_saving_low_usd"] == pytest.approx(max(0.0, 0.5 - 9 * 0.01 / low) * 30)
    assert row["monthly_saving_high_usd"] == pytest.approx((0.5 - 9 * 0.01 / high) * 30)
    assert row["monthly_saving_low_usd"] <= row["monthly_saving_usd"] <= row["monthly_saving_high_usd"]
    assert row["bound_kind"] == "estimate" and "workflow chat" in row["basis"]


def test_a_standard_model_accepted_less_often_than_the_margin_is_no_saving(workflows):
    assert "batch" not in {r["workflow"] for r in _opportunities(workflows, "premium_vs_standard")}
