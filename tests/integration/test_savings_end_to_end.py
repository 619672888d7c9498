"""The default emulated organisation's savings opportunities, sized from its own data (docs/marts.md)."""

from __future__ import annotations

import math
from datetime import timedelta

import duckdb
import pytest

from openrouter_emulator.catalog import MODEL_BY_ID

# GET /models/deepseek/deepseek-chat-v3-0324/endpoints in the emulator: the providers in use charge the catalogue
# price (USD per 1M tokens); Chutes is cheaper with uptime within 2 points of them.
DEEPSEEK = "deepseek/deepseek-chat-v3-0324"
IN_USE = {"prompt": 0.25, "cache_read": 0.07, "completion": 0.85}
CHUTES = {"prompt": 0.18, "cache_read": 0.18, "completion": 0.72}


def _rows(con, sql: str, params: list) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def warehouse(emulated_warehouse):
    with duckdb.connect(str(emulated_warehouse.published), read_only=True) as con:
        yield con, emulated_warehouse.days[-1]


def _loaded_days(con, day) -> int:
    return con.execute("select count(distinct usage_date) from marts.fct_daily_spend where usage_date between ? and ?",
                       [day - timedelta(days=6), day]).fetchone()[0]


def test_the_nightly_translation_job_could_move_deepseek_to_a_cheaper_host(warehouse):
    con, day = warehouse
    key_hash = con.execute("select api_key_hash from marts.dim_api_key where api_key_name = 'nightly-translation-job'"
                           ).fetchone()[0]
    (row,) = _rows(con, "select * from marts.rpt_savings_opportunities where usage_date = ? and "
                        "opportunity_kind = 'provider_price_spread' and api_key_hash = ?", [day, key_hash])
    prompt, cached, completion = con.execute(
        "select sum(prompt_tokens), sum(least(cached_tokens, prompt_tokens)), sum(completion_tokens) "
        "from marts.fct_daily_spend where api_key_hash = ? and model = ? and usage_date between ? and ?",
        [key_hash, DEEPSEEK, day - timedelta(days=6), day]).fetchone()

    def cost(prices):
        return ((prompt - cached) * prices["prompt"] + cached * prices["cache_read"]
                + completion * prices["completion"]) / 1e6

    expected = (cost(IN_USE) - cost(CHUTES)) / _loaded_days(con, day) * 30
    assert (row["model_permaslug"], row["alternative_provider_name"], row["bound_kind"]) == \
        (DEEPSEEK, "Chutes", "estimate")
    assert row["monthly_saving_usd"] == pytest.approx(expected, rel=1e-9)
    assert row["monthly_saving_usd"] > 5
    print(f"provider_price_spread nightly-translation-job {day}: ${row['monthly_saving_usd']:.2f} a month")


def test_a_cheaper_host_with_poor_uptime_is_no_opportunity(warehouse):
    con, day = warehouse
    # Fireworks lists Llama 3.3 70B below the hosts in use, at 93.1% uptime over the day against their 99+%.
    assert not con.execute("select count(*) from marts.rpt_savings_opportunities where opportunity_kind = "
                           "'provider_price_spread' and model_permaslug = 'meta-llama/llama-3.3-70b-instruct'"
                           ).fetchone()[0]


def test_a_premium_model_in_a_logged_workflow_against_its_standard_model(warehouse):
    con, day = warehouse
    rows = _rows(con, "select * from marts.rpt_savings_opportunities where usage_date = ? and "
                      "opportunity_kind = 'premium_vs_standard' order by monthly_saving_usd desc", [day])
    assert rows
    row = rows[0]
    figures = {}
    for side, permaslug in (("premium", row["model_permaslug"]), ("standard", row["alternative_model_permaslug"])):
        figures[side] = con.execute(
            "select count(*), count(*) filter (where g.is_accepted), sum(g.cost_usd + coalesce(g.byok_cost_usd, 0)) "
            "from marts.fct_generations g join marts.dim_model m on m.model = g.served_model "
            "where g.project = ? and g.workflow = ? and m.model_permaslug = ? and g.usage_date between ? and ? "
            "and g.is_accepted is not null and g.cost_usd is not null",
            [row["project"], row["workflow"], permaslug, day - timedelta(days=6), day]).fetchone()
    (premium_n, premium_accepted, premium_cost), (standard_n, standard_accepted, standard_cost) = figures.values()
    assert (row["premium_requests_7d"], row["premium_accepted_7d"]) == (premium_n, premium_accepted)
    assert (row["standard_requests_7d"], row["standard_accepted_7d"]) == (standard_n, standard_accepted)
    expected = (premium_cost - premium_accepted * standard_cost / standard_accepted) / _loaded_days(con, day) * 30
    assert row["monthly_saving_usd"] == pytest.approx(expected, rel=1e-9)
    assert row["standard_acceptance_rate"] >= row["premium_acceptance_rate"] - 0.05
    assert row["standard_acceptance_ci_low"] <= row["standard_acceptance_rate"] <= row["standard_acceptance_ci_high"]
    assert row["monthly_saving_low_usd"] <= row["monthly_saving_usd"] <= row["monthly_saving_high_usd"]
    assert 0 < row["verdict_coverage"] <= 1 and not math.isnan(row["verdict_coverage"])
    print(f"premium_vs_standard {row['project']}/{row['workflow']} {row['model_permaslug']} -> "
          f"{row['alternative_model_permaslug']} {day}: ${row['monthly_saving_usd']:.2f} a month "
          f"({row['monthly_saving_low_usd']:.2f}-{row['monthly_saving_high_usd']:.2f})")


@pytest.fixture(scope="module")
def price_change(emulated_warehouse) -> dict:
    """The default world's planted price change, as the emulator defines it (prices in USD per 1M tokens)."""
    from openrouter_emulator.org import build_org

    (event,) = [e for e in build_org("default", anchor_date=emulated_warehouse.anchor).events
                if e["event"] == "price_change"]
    return {**event, **{f"{age}_{name}": float(event[f"{age}_pricing"][name]) * 1e6
                        for age in ("old", "new") for name in ("prompt", "completion")}}


def test_a_model_price_cut_is_sized_from_the_projects_tokens(warehouse, price_change):
    con, day = warehouse
    # The snapshot taken after the day of the change is the first to show the new prices.
    changed_on = price_change["start_date"]
    assert changed_on > day - timedelta(days=30)
    volumes = con.execute(
        "select project, sum(prompt_tokens - least(cached_tokens, prompt_tokens)), "
        "sum(least(cached_tokens, prompt_tokens)), sum(completion_tokens) from marts.fct_daily_spend "
        "where model = ? and usage_date between ? and ? group by project",
        [price_change["model"], day - timedelta(days=6), day]).fetchall()
    rows = {row["project"]: row for row in _rows(
        con, "select * from marts.rpt_savings_opportunities where usage_date = ? and "
             "opportunity_kind = 'price_change' and model_permaslug = ?", [day, price_change["model_permaslug"]])}
    assert volumes and set(rows) == {project for project, *_ in volumes}
    prompt_change = price_change["new_prompt"] - price_change["old_prompt"]
    completion_change = price_change["new_completion"] - price_change["old_completion"]
    for project, uncached, cached, completion in volumes:
        row = rows[project]
        # The model offers no cache-read price, so cached tokens are charged the prompt price.
        expected = ((uncached + cached) * prompt_change + completion * completion_change) / 1e6 \
            / _loaded_days(con, day) * 30
        assert (row["model"], row["price_changed_on"], row["price_direction"], row["bound_kind"]) == \
            (price_change["model"], changed_on, "drop", "estimate")
        assert (row["old_prompt_price_per_mtok_usd"], row["new_prompt_price_per_mtok_usd"],
                row["old_completion_price_per_mtok_usd"], row["new_completion_price_per_mtok_usd"]) == \
            pytest.approx((price_change["old_prompt"], price_change["new_prompt"],
                           price_change["old_completion"], price_change["new_completion"]), rel=1e-12)
        assert row["monthly_price_effect_usd"] == pytest.approx(expected, rel=1e-9)
        assert row["monthly_saving_usd"] == pytest.approx(-expected, rel=1e-9)
        print(f"price_change {project} {price_change['model']} {day}: {row['monthly_price_effect_usd']:+.2f} "
              f"USD a month (uncached {uncached}, cached {cached}, completion {completion} tokens over "
              f"{_loaded_days(con, day)} days)")
    assert max(row["monthly_saving_usd"] for row in rows.values()) > 1
    # Before its first snapshot at the new prices, no day shows the change.
    assert not con.execute("select count(*) from marts.rpt_savings_opportunities where opportunity_kind = "
                           "'price_change' and usage_date < ?", [changed_on]).fetchone()[0]


def test_the_largest_prompt_caching_gap_is_sized_from_tokens_and_catalogue_prices(warehouse):
    con, day = warehouse
    (row,) = _rows(con, "select * from marts.rpt_savings_opportunities where usage_date = ? and "
                        "opportunity_kind = 'prompt_caching' order by monthly_saving_usd desc limit 1", [day])
    listed = MODEL_BY_ID[row["model"]]  # the emulator's catalogue, per token (no planted change on it)
    gap_per_token = float(listed.prompt) - float(listed.input_cache_read)
    daily = con.execute(
        "select usage_date, sum(prompt_tokens), sum(least(cached_tokens, prompt_tokens)) from marts.fct_daily_spend "
        "where api_key_hash = ? and model_permaslug = ? and usage_date between ? and ? group by 1",
        [row["api_key_hash"], row["model_permaslug"], day - timedelta(days=6), day]).fetchall()
    uncached_7d = sum(prompt - cached for _, prompt, cached in daily)
    expected = uncached_7d * gap_per_token / _loaded_days(con, day) * 30
    assert row["bound_kind"] == "upper_bound"
    assert row["monthly_saving_usd"] == pytest.approx(expected, rel=1e-9)
    today = {usage_date: (prompt, cached) for usage_date, prompt, cached in daily}[day]
    assert row["saved_today_usd"] == pytest.approx(today[1] * gap_per_token, rel=1e-9)
    assert row["monthly_saving_usd"] > 5
    print(f"prompt_caching {row['model']} {day}: up to ${row['monthly_saving_usd']:.2f} a month")


def test_every_kind_of_saving_is_there(warehouse):
    con, day = warehouse
    kinds = {kind for (kind,) in con.execute(
        "select distinct opportunity_kind from marts.rpt_savings_opportunities where usage_date = ?", [day]
    ).fetchall()}
    assert kinds == {"prompt_caching", "price_change", "provider_price_spread", "premium_vs_standard"}
