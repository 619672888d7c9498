"""How the digest writes numbers, words and CSV cells, and that its PNG charts carry no varying metadata."""

from __future__ import annotations

from datetime import date

import pytest

from openrouter_spend.reports.digest import charts
from openrouter_spend.reports.digest.data import DigestData, budget_status
from openrouter_spend.reports.digest.findings import why
from openrouter_spend.reports.digest.formatting import (
    money,
    points,
    share,
    short_day,
    signed_money,
    signed_share,
)
from openrouter_spend.reports.digest.tables import CsvTable, cell


@pytest.mark.parametrize(("value", "expected"), [
    (1234.5, "$1,234.50"), (0.004, "$0.00"), (-3.456, "\u2212$3.46"), (None, "\u2014"), (-0.001, "$0.00")])
def test_money(value, expected):
    assert money(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(12.6, "+$12.60"), (-1.87, "\u2212$1.87"), (0.001, "$0.00")])
def test_signed_money(value, expected):
    assert signed_money(value) == expected


def test_shares_and_points():
    assert share(0.7207) == "72%" and share(0.0307, 1) == "3.1%"
    assert signed_share(0.178) == "+18%" and signed_share(-0.04) == "\u22124%" and signed_share(0.001) == "0%"
    assert points(0.2166) == "+21.7 pts" and points(-0.0137) == "\u22121.4 pts" and points(0) == "0 pts"
    assert short_day(date(2026, 12, 2)) == "Wed 2 Dec"


def test_csv_cells_are_stable_and_rounded():
    assert cell(None) == "" and cell(True) == "true" and cell(date(2026, 3, 2)) == "2026-03-02"
    assert cell(0.1 + 0.2) == "0.3" and cell(12.0) == "12" and cell(-0.0000001) == "0"
    assert cell(1 / 3) == "0.333333" and cell(["a", "b"]) == "a; b" and cell(7) == "7"
    table = CsvTable("t.csv", "d", ("a", "b"), [{"a": 1.5, "b": None}, {"a": "x,y", "b": 2}])
    assert table.render() == b'a,b\n1.5,\n"x,y",2\n'


def test_why_names_the_largest_effects_in_words():
    change = {"volume_effect_usd": 20.74, "context_effect_usd": -6.32, "mix_price_effect_usd": -1.82,
              "waste_effect_usd": 0.0}
    assert why(change) == "mostly more requests (+$20.74), then shorter prompts per request (\u2212$6.32)"
    assert why({"volume_effect_usd": 0.1, "context_effect_usd": 0, "mix_price_effect_usd": 15.38,
                "waste_effect_usd": 0}) == "mostly pricier models or providers (+$15.38)"
    assert why({"wow_waste_effect_usd": 37.1}, "wow_") == "mostly more wasted spend on loops and duplicates (+$37.10)"
    assert why({"project_mix_effect_usd": -22.31, "volume_effect_usd": -16.78}) == \
        "mostly traffic shifting to cheaper projects (−$22.31), then fewer requests (−$16.78)"
    assert why({}) == "no change to explain"


def test_budget_status():
    base = {"project": "p", "daily_budget_used_ratio": 0.5, "weekly_budget_used_ratio": 0.5,
            "monthly_budget_used_ratio": 0.5, "forecast_monthly_budget_ratio": 0.9}
    assert budget_status(base) == "ok"
    assert budget_status({**base, "daily_budget_used_ratio": 1.01}) == "over"
    assert budget_status({**base, "forecast_monthly_budget_ratio": 1.2}) == "at_risk"
    assert budget_status({"project": "(unowned)"}) == "no_owner"
    assert budget_status({"project": "q", "daily_budget_used_ratio": None}) == "no_budget"


def _data() -> DigestData:
    days = [date(2026, 3, d) for d in range(1, 9)]
    trend = [{"usage_date": d, "project": p, "spend_usd": float(i + j)} for i, d in enumerate(days)
             for j, p in enumerate(("alpha", "beta", "gamma"))]
    balance = [{"as_of_date": d, "balance_usd": 500.0 - 20 * i, "burn_usd": 20.0 + i, "burn_7d_avg_usd": 21.0,
                "topup_usd": 100.0 if i == 3 else 0.0, "runway_days": 10.0} for i, d in enumerate(days)]
    mix = [{"project": "*", "provider_name": n, "spend_usd": s, "spend_share": s / 10, "prior_7d_spend_share": 0.3}
           for n, s in (("P1", 6.0), ("P2", 4.0))]
    premium = [{"usage_date": d, "project": p, "spend_usd": 10.0, "premium_spend_share": 0.1 * i,
                "premium_spend_share_baseline_28d": 0.2} for i, d in enumerate(days) for p in ("*", "alpha")]
    return DigestData(day=days[-1], source="t", has_data=True, balance=balance[-1], totals={}, month={}, budgets=[],
                      changes=[], premium=[], provider_mix=mix, unit_economics=[], alerts=[], alerts_state="",
                      alert_columns=[], quality=None, quality_state="", blind_spot_rows=[], blind_spots=[], waste=[],
                      unowned_keys=[], unused_keys=[], fallback=[], trend=trend, balance_trend=balance,
                      premium_trend=premium,
                      fallback_trend=[{"usage_date": d, "project": "alpha", "fallback_share": 0.05} for d in days])


def test_charts_are_byte_identical_and_carry_no_software_or_date_metadata():
    first = charts.render_all(_data())
    second = charts.render_all(_data())
    assert [c.name for c in first] == ["spend_by_project.png", "burn_and_runway.png", "provider_mix.png",
                                       "premium_share.png", "fallback_share.png"]
    assert [c.png for c in first] == [c.png for c in second]
    for chart in first:
        assert chart.png.startswith(b"\x89PNG") and b"tEXt" not in chart.png and b"matplotlib" not in chart.png
        assert b"tIME" not in chart.png


def test_a_sampled_share_shows_its_interval_and_a_census_share_does_not():
    from openrouter_spend.reports.digest.formatting import share_with_interval

    assert share_with_interval(0.12, 0.081, 0.163) == "12.0% (95% CI 8.1–16.3%)"
    assert share_with_interval(0.12, 0.12, 0.12) == "12.0%"
    assert share_with_interval(0.12, None, None) == "12.0%"


def _day_with_alerts(baseline_days: int) -> DigestData:
    data = _data()
    data.totals = {"spend_usd": 50.0, "byok_spend_usd": 0.0, "requests": 100, "active_keys": 2}
    data.month = {"month_to_date_usd": 300.0, "days_elapsed": 8, "loaded_days": 8}
    data.baseline_days = baseline_days
    data.changes = [{"project": "*", "spend_usd": 50.0, "prior_spend_usd": 40.0, "delta_usd": 10.0}]
    data.premium = [{"project": "*", "spend_usd": 50.0, "premium_spend_usd": 25.0, "premium_spend_share": 0.5,
                     "premium_spend_share_baseline_28d": 0.4, "premium_spend_share_change": 0.1, "annotations": []}]
    base = {"status": "fired", "severity": "warning", "project": "alpha", "budget_owner": "Ann", "impact_usd": 1.0,
            "explanation": None, "root_alert_id": None}
    data.alerts = [
        {**base, "alert_id": "a1", "rule_id": "premium_share_rise", "metric": "premium_spend_share",
         "observed_value": 0.8362, "expected_value": 0.6212},
        {**base, "alert_id": "a2", "rule_id": "budget_threshold", "metric": "daily_budget_used_ratio",
         "observed_value": 1.71, "expected_value": 1.0},
        {**base, "alert_id": "a3", "rule_id": "credit_runway_low", "metric": "runway_days",
         "observed_value": 4.2, "expected_value": 7.0},
        {**base, "alert_id": "a4", "rule_id": "credit_burn_spike", "metric": "spend_usd",
         "observed_value": 23.74, "expected_value": 12.49}]
    data.alerts_state = "fired"
    data.quality = {"run_id": "r1", "status": "passed", "expectation_count": 399, "failed_count": 0,
                    "warning_count": 0, "summary": "Data-quality gate passed for 2026-03-08 (run r1): 399 held.",
                    "data_docs_path": "/home/quality/docs/index.html", "failed_checks": []}
    data.quality_state = "passed"
    return data


def test_alert_values_are_shown_in_their_metrics_units_and_the_quality_banner_says_it_once():
    from openrouter_spend.reports.digest import html as digest_html

    html = digest_html.render(_day_with_alerts(28), [], [])
    alerts = html.split('id="alerts"')[1].split("</section>")[0]
    assert "83.6%" in alerts and "62.1%" in alerts and "0.8362" not in alerts
    assert "171.0%" in alerts and "100.0%" in alerts
    assert "4.2 days" in alerts and "7.0 days" in alerts
    assert "$23.74" in alerts and "$12.49" in alerts
    quality = html.split('id="blind-spots"')[1]
    assert quality.count("Data-quality gate passed") == 1 and "399 checks held" in quality
    assert 'href="../../quality/docs/index.html#day-2026-03-08"' in quality


def test_a_short_history_is_named_instead_of_claiming_28_days():
    from openrouter_spend.reports.digest import html as digest_html

    full = digest_html.render(_day_with_alerts(28), [], [])
    short = digest_html.render(_day_with_alerts(13), [], [])
    assert "over the previous 28 days" in full
    assert "28 days" not in short.split('id="changes"')[1].split("</section>")[0]
    assert "over the previous 13 days (all the history loaded)" in short
