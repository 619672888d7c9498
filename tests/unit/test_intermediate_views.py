"""The intermediate views: int_key_daily_spend (fct_daily_spend per key and day, as the key-level rules read it)
and int_model_price_daily (the prices that apply to a usage day)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.warehouse import connect


def one_day() -> RawRows:
    """a-web uses a premium model on two providers and a cheap one; an unlisted key spends too."""
    rows = RawRows()
    rows.workspace(DAY, "ws-alpha", "alpha-space")
    rows.price(DAY, "vendor/listed-pro", 3.0, 10.0).price(DAY, "vendor/lite", 0.2, 0.8)
    rows.key(DAY, "a-web", "ws-alpha", last_used=DAY).key(DAY, "stray", None, last_used=DAY)
    rows.use(DAY, "a-web", "vendor/listed-pro", "P1", requests=30, usage=4.0, prompt=3000, completion=600)
    rows.use(DAY, "a-web", "vendor/listed-pro", "P2", requests=20, usage=1.5, prompt=2000, completion=400)
    rows.use(DAY, "a-web", "vendor/lite", "P1", requests=40, usage=0.25, prompt=500, completion=100)
    rows.use(DAY, "stray", "vendor/lite", "P1", requests=5, usage=0.5)
    rows.unlisted_use(DAY, "vendor/lite", "P1", requests=3, usage=0.75)
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    house = FixtureWarehouse(tmp_path_factory.mktemp("intermediate"))
    house.load(one_day())
    house.build([DAY])
    return house


def test_a_key_day_sums_its_models_and_providers(warehouse):
    rows = {row["api_key_hash"]: row for row in warehouse.rows(
        "select * from intermediate.int_key_daily_spend where usage_date = ?", [DAY])}
    assert set(rows) == {key_hash("a-web"), key_hash("stray"), "(unattributed)"}
    web = rows[key_hash("a-web")]
    assert (web["project"], web["is_owned"], web["api_key_name"], web["workspace_name"]) == (
        "alpha", True, "a-web", "alpha-space")
    assert web["spend_usd"] == pytest.approx(5.75)
    assert web["premium_spend_usd"] == pytest.approx(5.5)
    assert (web["requests"], web["completion_tokens"], web["tokens"]) == (90, 1100, 5500 + 1100)
    assert web["top_model"] == "vendor/listed-pro"
    assert web["model_requests"] == [{"model": "vendor/listed-pro", "requests": 50},
                                     {"model": "vendor/lite", "requests": 40}]  # by model id
    stray = rows[key_hash("stray")]
    assert (stray["project"], stray["is_owned"], stray["premium_spend_usd"]) == ("(unowned)", False, 0)
    assert rows["(unattributed)"]["spend_usd"] == pytest.approx(0.75)


def test_a_migrated_warehouse_never_built_has_the_view(tmp_path):
    house = FixtureWarehouse(tmp_path)
    assert house.rows("select count(*) as n from intermediate.int_key_daily_spend") == [{"n": 0}]


def test_every_mart_build_recreates_the_view_from_its_file(warehouse):
    with connect(warehouse.path) as con:
        con.execute("create or replace view intermediate.int_key_daily_spend as select 1 as stale")
    warehouse.build([DAY])
    columns = [row["column_name"] for row in warehouse.rows(
        "select column_name from information_schema.columns "
        "where table_schema = 'intermediate' and table_name = 'int_key_daily_spend'")]
    assert columns[:3] == ["usage_date", "api_key_hash", "api_key_name"] and "stale" not in columns


def price_on(house: FixtureWarehouse, model: str, day) -> dict:
    """The one row of int_model_price_daily that applies to `day` for `model`."""
    rows = house.rows(
        "select * from intermediate.int_model_price_daily where model = ? and ? >= in_force_from "
        "and (in_force_to is null or ? < in_force_to)", [model, day, day])
    assert len(rows) == 1, rows
    return rows[0]


def test_the_price_of_a_day_is_the_version_in_force_else_the_first(tmp_path):
    later = DAY + timedelta(days=3)
    rows = RawRows()
    rows.price(DAY, "vendor/flip", 1.0, 2.0, cache_read_per_mtok=0.5)
    rows.price(DAY + timedelta(days=1), "vendor/flip", 1.0, 2.0, cache_read_per_mtok=0.5)
    rows.price(later, "vendor/flip", "-1", 4.0)  # a router sentinel prompt price and no cache-read price
    rows.key(DAY, "a-web", "ws-alpha", last_used=DAY)
    rows.use(DAY, "a-web", "vendor/flip", "P1", requests=1, usage=0.1)
    house = FixtureWarehouse(tmp_path)
    house.load(rows, {DAY, DAY + timedelta(days=1), later})
    house.build([DAY])

    before_any_snapshot = price_on(house, "vendor/flip", DAY - timedelta(days=40))
    assert before_any_snapshot["valid_from"] == DAY
    assert (before_any_snapshot["prompt_price_per_mtok_usd"], before_any_snapshot["completion_price_per_mtok_usd"],
            before_any_snapshot["cache_read_price_per_mtok_usd"], before_any_snapshot["is_router_price"]) == (
        pytest.approx(1.0), pytest.approx(2.0), pytest.approx(0.5), False)
    assert price_on(house, "vendor/flip", later - timedelta(days=1))["valid_from"] == DAY
    changed = price_on(house, "vendor/flip", later + timedelta(days=10))
    # The version lacks a prompt price: the first version's applies; its missing cache-read price stays missing.
    assert (changed["valid_from"], changed["in_force_from"], changed["in_force_to"]) == (later, later, None)
    assert (changed["prompt_price_per_mtok_usd"], changed["completion_price_per_mtok_usd"],
            changed["cache_read_price_per_mtok_usd"], changed["is_router_price"]) == (
        pytest.approx(1.0), pytest.approx(4.0), None, True)
