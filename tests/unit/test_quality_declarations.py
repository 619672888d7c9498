"""The gate's structural checks come from sql/marts/schema.yml and sql/staging/schema.yml, and only from there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from marts_fixtures import FixtureWarehouse
from test_quality_reconcile import D1, D2, D3, organisation

from openrouter_spend.alerts.rules import RULE_IDS
from openrouter_spend.config import settings
from openrouter_spend.config.owners import MATCH_KINDS
from openrouter_spend.quality import checks, datasets
from openrouter_spend.quality.config import QualityConfig
from openrouter_spend.warehouse import connect

# The grain, not-null, accepted-value and row-count checks the gate derived for this fixture when they were
# hard-coded in checks.py; the declarations in schema.yml must derive exactly these.
PINNED = Path(__file__).with_name("quality_structural_checks.json")
STRUCTURAL = (":grain_unique", ":not_null", ":accepted_values", ":row_count_vs_history")


@pytest.fixture
def sql_copy(tmp_path, monkeypatch):
    """A copy of sql/ the test may edit, read by a fresh declarations() cache."""
    folder = tmp_path / "sql"
    shutil.copytree(settings.sql_dir(), folder)
    monkeypatch.setattr(settings, "sql_dir", lambda: folder)
    checks.declarations.cache_clear()
    yield folder
    checks.declarations.cache_clear()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    house = FixtureWarehouse(tmp_path_factory.mktemp("declarations"))
    house.load(organisation())
    house.build([D1, D2, D3])
    return house


def test_declared_checks_are_the_ones_the_gate_derived_before(warehouse):
    with connect(warehouse.path) as con:
        derived = [{"check_id": check.check_id, "expectation": check.expectation, "severity": check.severity,
                    "kwargs": json.loads(json.dumps(check.kwargs, default=str))}
                   for dataset in datasets.build_datasets(con, D3, QualityConfig(), "run")
                   if dataset.suite in ("raw", "staging", "marts")
                   for check in dataset.checks if check.check_id.endswith(STRUCTURAL)]
    assert sorted(derived, key=lambda check: check["check_id"]) == json.loads(PINNED.read_text())


def test_accepted_values_owned_by_the_code_are_read_from_it():
    declared = checks.declarations()
    assert declared.accepted_values["marts.fct_alerts"]["rule_id"] == RULE_IDS
    assert declared.accepted_values["marts.dim_api_key"]["owner_match_kind"] == MATCH_KINDS
    assert declared.accepted_values["marts.dim_model"]["premium_reason"] == (
        declared.accepted_values["marts.fct_daily_spend"]["premium_reason"])
    assert declared.grain_columns == {"marts.dim_model_price_history": ("model", "valid_from")}
    assert declared.not_null["staging.stg_account_activity"] == ("provider_name", "usage_usd", "byok_usage_usd",
                                                                 "requests")
    assert "raw.activity" in declared.row_count_bounded and "marts.dim_model" not in declared.row_count_bounded


def test_a_declared_column_the_catalog_lacks_stops_the_gate(warehouse, sql_copy):
    staging = sql_copy / "staging" / "schema.yml"
    staging.write_text(staging.read_text().replace(
        "      total_usage_usd:\n", "      gone_usd:\n        description: Gone.\n        not_null: true\n"
        "      total_usage_usd:\n"))
    with connect(warehouse.path) as con:
        with pytest.raises(RuntimeError, match=r"staging\.stg_credits\.gone_usd"):
            datasets.build_datasets(con, D2, QualityConfig(), "run")


@pytest.mark.parametrize(("entry", "message"), [
    ("        not_nul: true\n", r"sql/staging/schema\.yml: staging\.stg_key_snapshots: .*not_nul"),
    ("        accepted_values_from: openrouter_spend.alerts.rules.NO_SUCH_LIST\n",
     r"staging\.stg_key_snapshots: .*NO_SUCH_LIST"),
])
def test_a_malformed_declaration_names_the_file_and_table(sql_copy, entry, message):
    staging = sql_copy / "staging" / "schema.yml"
    text = staging.read_text()
    anchor = "        description: The key's lifetime usage, as fetched.\n"
    staging.write_text(text.replace(anchor, anchor + entry))
    with pytest.raises(ValueError, match=message):
        checks.declarations()
