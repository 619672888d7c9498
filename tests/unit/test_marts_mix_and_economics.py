"""fct_provider_mix_daily, fct_model_mix_daily and rpt_unit_economics_daily on fixture rows with hand-computed
shares, dollar drifts and unit costs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows

PRIOR = DAY - timedelta(days=1)


def _rows() -> RawRows:
    rows = RawRows()
    for day in (PRIOR, DAY):
        rows.key(day, "a1").key(day, "b1", "ws-beta").key(day, "beta-1", "ws-beta").key(day, "stray", None)
        rows.price(day, "vendor/cheap", 1.0, 2.0).price(day, "vendor/pricey", 5.0, 20.0)
    rows.use(PRIOR, "a1", "vendor/cheap", "ProviderA", requests=10, usage=2.0)
    rows.use(PRIOR, "a1", "vendor/cheap", "ProviderC", requests=10, usage=2.0)
    rows.use(DAY, "a1", "vendor/cheap", "ProviderA", requests=10, usage=3.0, prompt=1000, completion=100)
    rows.use(DAY, "b1", "vendor/pricey", "ProviderB", requests=30, usage=1.0, prompt=3000, completion=900)
    rows.use(DAY, "beta-1", "vendor/cheap", "ProviderA", requests=10, usage=4.0, prompt=500, completion=500)
    rows.use(DAY, "stray", "vendor/cheap", "ProviderA", requests=5, usage=2.0, prompt=100, completion=100)
    return rows


OWNERS = """
projects:
  alpha:
    team: Team A
    budget_owner: Ann Owner
    contact: ann@example.com
    budgets_usd: {daily: 10}
    match:
      workspaces: [ws-alpha, ws-beta]
  beta:
    team: Team B
    budget_owner: Bob Owner
    contact: bob@example.com
    match:
      key_names: ["beta-*"]
"""


@pytest.fixture
def built(tmp_path):
    warehouse = FixtureWarehouse(tmp_path, owners=OWNERS)
    warehouse.load(_rows())
    warehouse.build([PRIOR, DAY])
    return warehouse


def test_provider_shares_per_project_and_account_with_drift(built):
    mix = {(r["project"], r["provider_name"]): r
           for r in built.rows("select * from marts.fct_provider_mix_daily where usage_date = ?", [DAY])}
    expected = {
        # (spend, requests, spend_share, request_share, prior_7d_spend_share)
        ("alpha", "ProviderA"): (3.0, 10, 0.75, 0.25, 0.5),
        ("alpha", "ProviderB"): (1.0, 30, 0.25, 0.75, 0.0),
        ("alpha", "ProviderC"): (0.0, 0, 0.0, 0.0, 0.5),
        ("beta", "ProviderA"): (4.0, 10, 1.0, 1.0, None),
        ("(unowned)", "ProviderA"): (2.0, 5, 1.0, 1.0, None),
        ("*", "ProviderA"): (9.0, 25, 0.9, 25 / 55, 0.5),
        ("*", "ProviderB"): (1.0, 30, 0.1, 30 / 55, 0.0),
        ("*", "ProviderC"): (0.0, 0, 0.0, 0.0, 0.5),
    }
    assert set(mix) == set(expected)
    for segment, (spend, requests, spend_share, request_share, prior) in expected.items():
        row = mix[segment]
        assert row["spend_usd"] == pytest.approx(spend), segment
        assert row["requests"] == requests, segment
        assert row["spend_share"] == pytest.approx(spend_share), segment
        assert row["request_share"] == pytest.approx(request_share), segment
        assert row["prior_7d_spend_share"] == (None if prior is None else pytest.approx(prior)), segment
    assert mix[("alpha", "ProviderC")]["spend_share_change_7d"] == pytest.approx(-0.5)
    assert mix[("alpha", "ProviderA")]["spend_share_change_7d"] == pytest.approx(0.25)


def test_provider_drift_in_dollars_is_the_share_change_at_todays_project_spend(built):
    mix = {(r["project"], r["provider_name"]): r
           for r in built.rows("select * from marts.fct_provider_mix_daily where usage_date = ?", [DAY])}
    # alpha spent $4 today and $4 yesterday (A $2, C $2); the account $10 today.
    expected = {
        # (spend_shift_7d_usd, prior_7d_avg_spend_usd, spend_change_7d_usd)
        ("alpha", "ProviderA"): (0.25 * 4, 2 / 7, 3 - 2 / 7),
        ("alpha", "ProviderB"): (0.25 * 4, 0.0, 1.0),
        ("alpha", "ProviderC"): (-0.5 * 4, 2 / 7, -2 / 7),
        ("*", "ProviderA"): (0.4 * 10, 2 / 7, 9 - 2 / 7),
        ("*", "ProviderC"): (-0.5 * 10, 2 / 7, -2 / 7),
    }
    for segment, (shift, prior_avg, change) in expected.items():
        row = mix[segment]
        assert (row["spend_shift_7d_usd"], row["prior_7d_avg_spend_usd"], row["spend_change_7d_usd"]) == \
            (pytest.approx(shift), pytest.approx(prior_avg), pytest.approx(change)), segment
    # Within a project with history the shifts only move money between providers: they sum to zero.
    assert sum(mix[("alpha", p)]["spend_shift_7d_usd"] for p in ("ProviderA", "ProviderB", "ProviderC")) == \
        pytest.approx(0)
    # No history, no drift: beta's first day has no share to move from.
    assert mix[("beta", "ProviderA")]["spend_shift_7d_usd"] is None


def test_model_mix_shares_and_dollar_drift_per_project_and_account(built):
    mix = {(r["project"], r["model_permaslug"]): r
           for r in built.rows("select * from marts.fct_model_mix_daily where usage_date = ?", [DAY])}
    expected = {
        # (spend, requests, spend_share, prior_7d_spend_share, spend_shift_7d_usd, spend_change_7d_usd)
        ("alpha", "vendor/cheap"): (3.0, 10, 0.75, 1.0, -0.25 * 4, 3 - 4 / 7),
        ("alpha", "vendor/pricey"): (1.0, 30, 0.25, 0.0, 0.25 * 4, 1.0),
        ("beta", "vendor/cheap"): (4.0, 10, 1.0, None, None, 4.0),
        ("(unowned)", "vendor/cheap"): (2.0, 5, 1.0, None, None, 2.0),
        ("*", "vendor/cheap"): (9.0, 25, 0.9, 1.0, -0.1 * 10, 9 - 4 / 7),
        ("*", "vendor/pricey"): (1.0, 30, 0.1, 0.0, 0.1 * 10, 1.0),
    }
    assert set(mix) == set(expected)
    for segment, (spend, requests, share, prior, shift, change) in expected.items():
        row = mix[segment]
        assert (row["spend_usd"], row["requests"], row["spend_share"]) == \
            (pytest.approx(spend), requests, pytest.approx(share)), segment
        assert row["prior_7d_spend_share"] == (None if prior is None else pytest.approx(prior)), segment
        assert row["spend_shift_7d_usd"] == (None if shift is None else pytest.approx(shift)), segment
        assert row["spend_change_7d_usd"] == pytest.approx(change), segment


def test_unit_economics_per_project_and_account(built):
    report = {r["project"]: r
              for r in built.rows("select * from marts.rpt_unit_economics_daily where usage_date = ?", [DAY])}
    assert set(report) == {"alpha", "beta", "(unowned)", "*"}
    alpha = report["alpha"]
    assert (alpha["team"], alpha["budget_owner"], alpha["requests"], alpha["total_tokens"], alpha["active_keys"]) == \
        ("Team A", "Ann Owner", 40, 5000, 2)
    assert alpha["spend_usd"] == pytest.approx(4.0)
    assert alpha["cost_per_request_usd"] == pytest.approx(0.1)
    assert alpha["cost_per_1k_tokens_usd"] == pytest.approx(0.8)
    assert alpha["tokens_per_request"] == pytest.approx(125)
    assert alpha["premium_spend_usd"] == pytest.approx(1.0)
    assert alpha["premium_spend_share"] == pytest.approx(0.25)
    assert alpha["premium_spend_share_baseline_28d"] == pytest.approx(0.0)
    assert alpha["premium_spend_share_change"] == pytest.approx(0.25)
    assert alpha["top_provider_name"] == "ProviderA"
    assert alpha["top_provider_spend_share"] == pytest.approx(0.75)
    assert alpha["provider_hhi"] == pytest.approx(0.75 ** 2 + 0.25 ** 2)
    account = report["*"]
    assert (account["team"], account["requests"], account["active_keys"]) == (None, 55, 4)
    assert account["spend_usd"] == pytest.approx(10.0)
    assert account["unowned_spend_usd"] == pytest.approx(2.0)
    assert account["premium_spend_share"] == pytest.approx(0.1)
    assert report["(unowned)"]["unowned_spend_usd"] == pytest.approx(2.0)
    assert report["beta"]["premium_spend_share_baseline_28d"] is None
    for row in report.values():
        assert (row["fallback_request_share"], row["generation_coverage_share"], row["accepted_results"],
                row["cost_per_accepted_result_usd"]) == (None, None, None, None)
