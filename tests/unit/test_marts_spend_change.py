"""rpt_spend_change and rpt_key_usage_daily: hand-computed decompositions, waste, and the identity on random data."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows

PRIOR = DAY - timedelta(days=1)


def _change(warehouse: FixtureWarehouse, project: str = "alpha", day=DAY) -> dict:
    rows = warehouse.rows("select * from marts.rpt_spend_change where project = ? and usage_date = ?", [project, day])
    assert len(rows) == 1
    return rows[0]


def _effects(row: dict, prefix: str = "") -> tuple:
    return tuple(row[f"{prefix}{name}_effect_usd"] for name in ("volume", "context", "mix_price", "waste"))


@pytest.mark.parametrize(("today", "expected"), [
    # (requests, prompt, completion, spend) on DAY against 100 requests, 90k+10k tokens, $10 the day before
    ((200, 180_000, 20_000, 20.0), (10.0, 0.0, 0.0, 0.0)),   # twice the requests, same shape: all volume
    ((100, 180_000, 20_000, 20.0), (0.0, 10.0, 0.0, 0.0)),   # twice the tokens per request: all context
    ((100, 90_000, 10_000, 15.0), (0.0, 0.0, 5.0, 0.0)),     # same tokens, dearer: all mix/price
])
def test_single_factor_moves_are_attributed_entirely_to_that_factor(tmp_path, today, expected):
    warehouse = FixtureWarehouse(tmp_path)
    requests, prompt, completion, spend = today
    rows = RawRows().key(PRIOR, "k").key(DAY, "k")
    rows.use(PRIOR, "k", "vendor/m", requests=100, prompt=90_000, completion=10_000, usage=10.0)
    rows.use(DAY, "k", "vendor/m", requests=requests, prompt=prompt, completion=completion, usage=spend)
    warehouse.load(rows)
    warehouse.build([PRIOR, DAY])

    change = _change(warehouse)
    assert change["prior_spend_usd"] == pytest.approx(10.0)
    assert change["delta_usd"] == pytest.approx(spend - 10.0)
    assert _effects(change) == pytest.approx(expected, abs=1e-9)
    assert change["decomposition_method"] == "lmdi"


def test_a_general_move_matches_the_log_mean_divisia_formula(tmp_path):
    import math

    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows().key(PRIOR, "k").key(DAY, "k")
    rows.use(PRIOR, "k", "vendor/m", requests=100, prompt=80_000, completion=20_000, usage=10.0)
    rows.use(DAY, "k", "vendor/m", requests=150, prompt=180_000, completion=30_000, usage=18.0)
    warehouse.load(rows)
    warehouse.build([PRIOR, DAY])

    weight = (18.0 - 10.0) / (math.log(18.0) - math.log(10.0))
    expected = (weight * math.log(150 / 100), weight * math.log((210_000 / 150) / (100_000 / 100)),
                weight * math.log((18.0 / 210_000) / (10.0 / 100_000)), 0.0)
    change = _change(warehouse)
    assert _effects(change) == pytest.approx(expected, abs=1e-9)
    assert sum(_effects(change)) == pytest.approx(8.0, abs=1e-9)


def test_new_projects_are_all_volume_and_unloaded_prior_days_are_unknown(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows().key(PRIOR, "k").key(DAY, "k").key(DAY, "beta-1", "ws-beta")
    rows.use(PRIOR, "k", "vendor/m", requests=10, usage=1.0)
    rows.use(DAY, "k", "vendor/m", requests=10, usage=1.0)
    rows.use(DAY, "beta-1", "vendor/m", requests=5, usage=2.0)
    warehouse.load(rows)
    warehouse.build([PRIOR, DAY])

    beta = _change(warehouse, "beta")
    assert (beta["prior_spend_usd"], beta["delta_usd"], beta["decomposition_method"]) == (0.0, 2.0, "volume_only")
    assert _effects(beta) == (2.0, 0.0, 0.0, 0.0)
    first_day = _change(warehouse, "alpha", PRIOR)
    assert (first_day["prior_spend_usd"], first_day["delta_usd"], first_day["decomposition_method"]) == (None,) * 3
    assert _effects(first_day) == (None,) * 4
    assert _effects(_change(warehouse), "wow_") == (None,) * 4


def test_a_loop_is_reported_as_waste_not_growth(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    days = [DAY - timedelta(days=offset) for offset in range(7, 0, -1)]
    for day in days:
        rows.key(day, "loop").use(day, "loop", "vendor/m", requests=100, prompt=100_000, completion=1_000, usage=1.0)
    rows.key(DAY, "loop").use(DAY, "loop", "vendor/m", requests=1000, prompt=1_000_000, completion=1_000, usage=10.0)
    warehouse.load(rows)
    warehouse.build([*days, DAY])

    usage = warehouse.rows("select * from marts.rpt_key_usage_daily where usage_date = ?", [DAY])[0]
    assert usage["is_loop_shaped"] is True
    assert (usage["baseline_daily_requests"], usage["baseline_completion_tokens_per_request"]) == (100, 10)
    assert usage["wasted_requests"] == pytest.approx(900)
    assert usage["wasted_spend_usd"] == pytest.approx(9.0)
    assert usage["request_ratio"] == pytest.approx(10)
    # Useful requests stay at 100 (1,000 completion tokens ÷ 10 per request): the $9 rise is all waste;
    # tokens per request fall as much as cost per token rises, so context and mix/price cancel.
    change = _change(warehouse)
    volume, context, mix, waste = _effects(change)
    assert change["delta_usd"] == pytest.approx(9.0)
    assert (volume, waste) == (pytest.approx(0.0, abs=1e-9), pytest.approx(9.0))
    assert context == pytest.approx(-mix)
    economics = warehouse.rows("select wasted_spend_usd from marts.rpt_unit_economics_daily "
                               "where usage_date = ? and project = 'alpha'", [DAY])
    assert economics[0]["wasted_spend_usd"] == pytest.approx(9.0)
    quiet_day = warehouse.rows("select * from marts.rpt_key_usage_daily where usage_date = ?", [days[-1]])[0]
    assert (quiet_day["is_loop_shaped"], quiet_day["wasted_requests"]) == (False, 0)


@pytest.mark.parametrize("seed", range(6))
def test_effects_sum_to_the_change_for_random_inputs(tmp_path, seed):
    rng = random.Random(seed)
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    days = [DAY + timedelta(days=offset) for offset in range(10)]
    keys = [("a1", "ws-alpha"), ("a2", "ws-alpha"), ("beta-1", "ws-beta"), ("beta-2", "ws-beta"), ("x", None)]
    for day in days:
        for name, workspace in keys:
            rows.key(day, name, workspace)
            for model in ("vendor/a", "vendor/b"):
                if rng.random() < 0.25:
                    continue
                requests = rng.choice([1, rng.randint(1, 50), rng.randint(100, 5000)])
                rows.use(day, name, model, rng.choice(["P1", "P2"]), requests=requests,
                         prompt=requests * rng.randint(50, 5000), completion=requests * rng.choice([0, 1, 50, 400]),
                         usage=rng.choice([0.0, rng.uniform(1e-6, 0.01), rng.uniform(0.1, 500.0)]))
    warehouse.load(rows)
    warehouse.build(days)

    changes = warehouse.rows("select * from marts.rpt_spend_change where prior_spend_usd is not null")
    assert len(changes) >= 30
    checked = 0
    for row in changes:
        for prefix, delta in (("", row["delta_usd"]), ("wow_", row["wow_delta_usd"])):
            if delta is None:
                continue
            effects = (*_effects(row, prefix), row[f"{prefix}project_mix_effect_usd"])
            assert sum(effects) == pytest.approx(delta, rel=1e-9, abs=1e-9), (row, prefix)
            assert all(abs(effect) < float("inf") for effect in effects)
            checked += 1
    assert checked >= 40
    assert {row["decomposition_method"] for row in changes} == {"lmdi", "volume_only"}
    assert {row["project_mix_effect_usd"] for row in changes if row["project"] != "*"} == {0.0}
