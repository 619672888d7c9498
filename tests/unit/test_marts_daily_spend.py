"""fct_daily_spend and dim_model_price_history on fixture rows: ownership, premium history, unattributed spend."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

DAY2 = DAY + timedelta(days=1)

PRECEDENCE_OWNERS = f"""
projects:
  hashed:
    team: T1
    budget_owner: O1
    contact: o1@example.com
    match:
      key_hashes: [{key_hash("beta-special")}]
  beta:
    team: T2
    budget_owner: O2
    contact: o2@example.com
    match:
      key_names: ["beta-*", {{pattern: "temp", valid_to: {DAY}}}]
  beta-tenants:
    team: T3
    budget_owner: O3
    contact: o3@example.com
    match:
      key_names: ["beta-tenant-*"]
  alpha:
    team: T4
    budget_owner: O4
    contact: o4@example.com
    match:
      workspaces: [Alpha Space]
"""


def _owners(warehouse: FixtureWarehouse, day) -> dict[str, tuple]:
    return {row["api_key_name"]: (row["project"], row["is_owned"], row["owner_match_kind"], row["budget_owner"])
            for row in warehouse.rows("select * from marts.fct_daily_spend where usage_date = ?", [day])}


def test_owner_matchers_follow_hash_then_glob_specificity_then_workspace(tmp_path):
    warehouse = FixtureWarehouse(tmp_path, owners=PRECEDENCE_OWNERS)
    rows = RawRows().workspace(DAY, "ws-1", "Alpha Space").workspace(DAY2, "ws-1", "Alpha Space")
    for day in (DAY, DAY2):
        for name in ("beta-special", "beta-tenant-7", "beta-x", "gamma", "temp"):
            rows.key(day, name, "ws-1").use(day, name, "vendor/m", requests=1, usage=0.1)
        rows.key(day, "stray", "ws-2").use(day, "stray", "vendor/m", requests=1, usage=0.1)
    warehouse.load(rows)
    warehouse.build([DAY, DAY2])

    assert _owners(warehouse, DAY) == {
        "beta-special": ("hashed", True, "key_hash", "O1"),
        "beta-tenant-7": ("beta-tenants", True, "key_name", "O3"),
        "beta-x": ("beta", True, "key_name", "O2"),
        "gamma": ("alpha", True, "workspace", "O4"),
        "temp": ("beta", True, "key_name", "O2"),
        "stray": ("(unowned)", False, None, None),
    }
    # The "temp" matcher ends on DAY; afterwards the key falls back to its workspace.
    assert _owners(warehouse, DAY2)["temp"] == ("alpha", True, "workspace", "O4")


def test_premium_uses_the_price_of_the_day_and_keeps_history_after_a_price_change(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    for day, pro_price in ((DAY, 10.0), (DAY2, 20.0)):
        rows.key(day, "k")
        rows.price(day, "vendor/pro", 2.0, pro_price).use(day, "k", "vendor/pro", requests=10, usage=1.0)
        rows.price(day, "vendor/listed-x", 0.1, 1.0).use(day, "k", "vendor/listed-x", requests=1, usage=0.01)
        rows.price(day, "vendor/never", 30.0, 100.0).use(day, "k", "vendor/never", requests=1, usage=0.5)
        rows.price(day, "vendor/free:free", 30.0, 100.0).use(day, "k", "vendor/free:free", "P2", requests=1,
                                                              usage=0.0)
        rows.price(day, "openrouter/auto", "-1", "-1").use(day, "k", "openrouter/auto", requests=1, usage=0.2)
    warehouse.load(rows)
    warehouse.build([DAY, DAY2])

    def classification():
        return {(r["usage_date"], r["model"]): (r["is_premium"], r["premium_reason"], r["completion_price_per_mtok_usd"])
                for r in warehouse.rows("select * from marts.fct_daily_spend")}

    expected = {
        (DAY, "vendor/pro"): (False, "below_threshold", pytest.approx(10.0)),
        (DAY2, "vendor/pro"): (True, "completion_price", pytest.approx(20.0)),
        (DAY, "vendor/listed-x"): (True, "listed", pytest.approx(1.0)),
        (DAY, "vendor/never"): (False, "listed_never_premium", pytest.approx(100.0)),
        (DAY, "vendor/free:free"): (False, "free_variant", pytest.approx(100.0)),
        (DAY, "openrouter/auto"): (False, "router_price", None),
    }
    assert {k: v for k, v in classification().items() if k in expected} == expected
    history = warehouse.rows("select valid_from, valid_to, is_current, completion_price_per_mtok_usd as price "
                             "from marts.dim_model_price_history where model = 'vendor/pro' order by valid_from")
    assert history == [
        {"valid_from": DAY, "valid_to": DAY2, "is_current": False, "price": pytest.approx(10.0)},
        {"valid_from": DAY2, "valid_to": None, "is_current": True, "price": pytest.approx(20.0)},
    ]
    dim = warehouse.rows("select is_premium, completion_price_per_mtok_usd as price, price_valid_from "
                         "from marts.dim_model where model_permaslug = 'vendor/pro'")
    assert dim == [{"is_premium": True, "price": pytest.approx(20.0), "price_valid_from": DAY2}]

    warehouse.rebuild()
    assert {k: v for k, v in classification().items() if k in expected} == expected


def test_unattributed_account_spend_and_free_variants_merge_into_the_grain(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = (RawRows().key(DAY, "k")
            .use(DAY, "k", "vendor/free", requests=4, usage=0.4, byok=0.1, prompt=400, completion=40)
            .use(DAY, "k", "vendor/free:free", requests=6, usage=0.0, prompt=600, completion=60)
            .unlisted_use(DAY, "vendor/gone", requests=3, usage=0.25))
    warehouse.load(rows)
    warehouse.build([DAY])

    spend = {r["api_key_hash"]: r for r in warehouse.rows("select * from marts.fct_daily_spend")}
    assert set(spend) == {key_hash("k"), "(unattributed)"}
    merged = spend[key_hash("k")]
    assert (merged["model"], merged["model_permaslug"], merged["requests"], merged["prompt_tokens"]) == \
        ("vendor/free", "vendor/free", 10, 1000)
    assert merged["spend_usd"] == pytest.approx(0.4)
    assert merged["byok_spend_usd"] == pytest.approx(0.1)
    assert merged["total_spend_usd"] == pytest.approx(0.5)
    orphan = spend["(unattributed)"]
    assert (orphan["project"], orphan["is_owned"], orphan["requests"], orphan["api_key_name"]) == \
        ("(unowned)", False, 3, None)
    assert orphan["spend_usd"] == pytest.approx(0.25)


def test_a_changed_registry_applies_from_the_first_unbuilt_day_and_history_keeps_its_version(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    rows = RawRows()
    for day in (DAY, DAY2):
        rows.key(day, "gamma").use(day, "gamma", "vendor/m", requests=1, usage=0.1)
    warehouse.load(rows, {DAY})
    warehouse.build([DAY])
    owners = (warehouse.config_dir / "owners.yaml").read_text()
    (warehouse.config_dir / "owners.yaml").write_text(owners.replace('key_names: ["beta-*"]',
                                                                     'key_names: ["beta-*", "gamma"]'))
    warehouse.load(rows, {DAY2})
    warehouse.build([DAY2])

    def projects():
        return [(r["usage_date"], r["project"], r["config_version_id"])
                for r in warehouse.rows("select * from marts.fct_daily_spend order by usage_date")]

    assert projects() == [(DAY, "alpha", 1), (DAY2, "beta", 2)]
    versions = warehouse.rows("select config_version_id, effective_from, effective_to "
                              "from config.config_versions order by 1")
    assert [(v["config_version_id"], v["effective_to"]) for v in versions] == [(1, DAY2), (2, None)]
    assert versions[1]["effective_from"] == DAY2

    warehouse.rebuild()
    assert projects() == [(DAY, "alpha", 1), (DAY2, "beta", 2)]
    warehouse.rebuild(restate_config=True)
    assert projects() == [(DAY, "beta", 2), (DAY2, "beta", 2)]


def test_comment_only_config_edits_make_no_new_version(tmp_path):
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(RawRows().key(DAY, "k").use(DAY, "k", "vendor/m", requests=1, usage=0.1))
    warehouse.build([DAY])
    owners = warehouse.config_dir / "owners.yaml"
    owners.write_text("# reviewed by finance\n" + owners.read_text())
    warehouse.build([DAY])
    assert warehouse.rows("select count(*) as n from config.config_versions") == [{"n": 1}]
