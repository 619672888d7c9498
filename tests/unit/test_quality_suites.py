"""How suites are derived (declared grains, column rules) and how GX results become rows, messages and docs."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, date, datetime

import duckdb
import pandas as pd
import pytest

from openrouter_spend.config import settings
from openrouter_spend.quality import checks, gate
from openrouter_spend.quality.checks import (
    NOT_VALIDATED,
    Check,
    Dataset,
    column_checks,
    declared_grain,
    declared_nullable,
    relation_grain,
)
from openrouter_spend.quality.config import QualityConfig
from openrouter_spend.warehouse import DUCKDB_CONFIG, build_staging, migrate
from openrouter_spend.warehouse.marts import shape_mart_tables


@pytest.mark.parametrize(("header", "grain"), [
    ("Grain: usage_date × project (project '*' = whole account). Key: the same two columns.",
     ("usage_date", "project")),
    ("Grain: model (id) × price version. Key: model, valid_from.", ("model", "valid_from")),
    ("Grain: as_of_date (the usage day whose end the /credits snapshot follows). Key: as_of_date.",
     ("as_of_date",)),
    ("Grain: snapshot_date", ("snapshot_date",)),
    ("Grain: model × price version", None),
    ("no grain here", None),
])
def test_declared_grain(header, grain):
    assert declared_grain(header) == grain


def test_declared_nullable_grain_columns():
    header = "Grain: scope × usage_date × api_key_hash (api_key_hash NULL for scope 'account')"
    assert declared_grain(header) == ("scope", "usage_date", "api_key_hash")
    assert declared_nullable(header) == {"api_key_hash"}
    assert declared_nullable("Grain: usage_date × project (project '*' = whole account)") == set()


@pytest.fixture(scope="module")
def reference():
    con = duckdb.connect(":memory:", config=dict(DUCKDB_CONFIG))
    migrate(con)
    build_staging(con)
    shape_mart_tables(con)
    yield con
    con.close()


def test_every_staging_view_and_mart_declares_a_grain_made_of_its_columns(reference):
    relations = reference.execute(
        "select table_schema || '.' || table_name from information_schema.tables "
        "where table_schema in ('staging', 'marts') order by 1").fetchall()
    assert len(relations) > 20
    for (relation,) in relations:
        if relation in NOT_VALIDATED:
            continue
        schema, name = relation.split(".")
        columns = [c for (c,) in reference.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, name]).fetchall()]
        grain, nullable = relation_grain(reference, relation, columns)
        assert grain and set(grain) <= set(columns), relation
        assert nullable <= set(grain), relation
        sql_file = settings.sql_dir() / schema / f"{name}.sql"
        if schema == "staging":  # staging views have no primary key: the header is the only declaration
            header = next(line for line in checks._sql_header(sql_file).splitlines() if line.startswith("Grain:"))
            assert grain == declared_grain(header), relation


def test_column_rules_classify_money_volumes_shares_and_documented_negatives():
    config = QualityConfig()
    columns = ["usage_date", "project", "spend_usd", "delta_usd", "requests", "prompt_tokens", "spend_share",
               "spend_share_change_7d", "provider_hhi", "decomposition_method", "daily_budget_used_ratio"]
    checks = {c.check_id: c for c in column_checks("marts.rpt_spend_change", columns, ("usage_date", "project"),
                                                     config)}
    prefix = "marts.rpt_spend_change:"
    assert set(checks) == {prefix + name for name in (
        "grain_unique", "usage_date:not_null", "project:not_null", "spend_usd:non_negative",
        "requests:non_negative", "prompt_tokens:non_negative", "spend_share:share_in_0_1",
        "provider_hhi:share_in_0_1", "decomposition_method:accepted_values")}
    assert checks[prefix + "spend_share:share_in_0_1"].kwargs == {
        "column": "spend_share", "min_value": 0, "max_value": 1 + config.tolerances.share_epsilon}
    assert checks[prefix + "grain_unique"].expectation == "ExpectCompoundColumnsToBeUnique"
    nullable = column_checks("staging.x", ["a", "b"], ("a", "b"), config, {"b"})
    assert [c.check_id for c in nullable] == ["staging.x:grain_unique", "staging.x:a:not_null"]


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """Two small frames with known defects, validated by GX into result rows and Data Docs."""
    docs = tmp_path_factory.mktemp("quality") / "docs"
    spend = pd.DataFrame({"day": ["d1", "d1", "d1", "d1"], "key": ["a", "b", "c", None],
                          "spend_usd": [1.0, -2.5, 0.0, 3.0]})
    recon = pd.DataFrame({"key": ["a", "b"], "tolerance_usd": [0.1, 0.1], "abs_difference_usd": [0.05, 4.0]})
    datasets = [
        Dataset("marts.toy", "marts", spend, [
            Check("marts.toy:grain_unique", "ExpectCompoundColumnsToBeUnique", {"column_list": ["day", "key"]},
                  "one row per day × key"),
            Check("marts.toy:key:not_null", "ExpectColumnValuesToNotBeNull", {"column": "key"}, "key is never NULL"),
            Check("marts.toy:spend_usd:non_negative", "ExpectColumnValuesToBeBetween",
                  {"column": "spend_usd", "min_value": 0}, "spend_usd (money) is never negative"),
            Check("marts.toy:row_count", "ExpectTableRowCountToBeBetween", {"min_value": 5, "max_value": 9},
                  "between 5 and 9 rows", severity="warning"),
            Check("marts.toy:gone_usd:non_negative", "ExpectColumnValuesToBeBetween",
                  {"column": "gone_usd", "min_value": 0}, "gone_usd (money) is never negative"),
        ], ["day", "key"]),
        Dataset("reconcile.toy", "reconciliation", recon, [
            Check("reconcile.toy:within", "ExpectColumnPairValuesAToBeGreaterThanB",
                  {"column_A": "tolerance_usd", "column_B": "abs_difference_usd", "or_equal": True},
                  "differences within tolerance", explain=lambda f: f"key b is off by {f.abs_difference_usd[1]:.2f}"),
        ], ["key"]),
    ]
    rows = gate.run_datasets(datasets, "run-1", datetime(2026, 3, 2, tzinfo=UTC), docs,
                                QualityConfig(warn_only=("marts.toy:key:*",)))
    return {row["check_id"]: row for row in rows}, docs


def test_results_name_the_failing_rows_by_their_keys(validated):
    rows, _ = validated
    assert set(rows) == {"marts.toy:grain_unique", "marts.toy:key:not_null", "marts.toy:spend_usd:non_negative",
                         "marts.toy:row_count", "marts.toy:gone_usd:non_negative", "reconcile.toy:within"}
    assert rows["marts.toy:grain_unique"]["success"] is True
    negative = rows["marts.toy:spend_usd:non_negative"]
    assert negative["success"] is False and negative["severity"] == "error"
    assert (negative["unexpected_count"], negative["element_count"]) == (1, 4)
    assert negative["column_name"] == "spend_usd"
    assert '"key": "b"' in negative["unexpected_sample"] and "-2.5" in negative["unexpected_sample"]
    assert negative["message"].startswith("spend_usd (money) is never negative: 1 of 4 row(s) break it")
    assert rows["marts.toy:key:not_null"]["success"] is False
    assert rows["marts.toy:key:not_null"]["severity"] == "warning"  # warn_only glob
    count = rows["marts.toy:row_count"]
    assert count["success"] is False and count["observed_value"] == "4" and "observed 4" in count["message"]
    assert rows["reconcile.toy:within"]["message"] == "key b is off by 4.00"
    gone = rows["marts.toy:gone_usd:non_negative"]
    assert gone["success"] is False
    assert gone["message"] == "gone_usd (money) is never negative: could not be evaluated (no column gone_usd in marts.toy)"
    assert rows["reconcile.toy:within"]["column_name"] == "tolerance_usd,abs_difference_usd"


def test_data_docs_show_the_run_and_name_its_failed_checks(validated):
    _, docs = validated
    # One suite, every check one row of its batch; GX's own index is not built (quality/docs.py writes one).
    assert "quality.gate" in (docs / "expectations" / "quality" / "gate.html").read_text()
    assert not (docs / "index.html").exists()
    [page] = (docs / "validations" / "quality" / "gate").glob("run-1/*/*.html")
    named = set(re.findall(r"(?:marts|reconcile)\.toy:[a-z_:]+", page.read_text()))
    assert named == {"marts.toy:spend_usd:non_negative", "marts.toy:key:not_null", "marts.toy:row_count",
                     "reconcile.toy:within"}


def test_summary_lists_errors_then_warnings(validated):
    rows, docs = validated
    summary = gate.summarize(date(2026, 3, 2), "run-1", list(rows.values()), docs / "index.html")
    lines = summary.splitlines()
    assert lines[0] == ("Data-quality gate FAILED for 2026-03-02 (run run-1): 3 of 6 expectations failed; "
                        "nothing is published for this day.")
    assert lines[1].startswith("- [marts] marts.toy:spend_usd:non_negative: spend_usd (money) is never negative")
    assert lines[2].startswith("- [marts] marts.toy:gone_usd:non_negative: ")
    assert lines[3] == "- [reconciliation] reconcile.toy:within: key b is off by 4.00"
    assert lines[4] == "Warnings (not blocking):"
    assert {line.split(":")[0] for line in lines[5:7]} == {"- [marts] marts.toy"}
    # Relative to the home: the same line is true in a log, an e-mail and Slack.
    assert lines[-1] == "Data Docs: quality/docs/index.html#day-2026-03-02 (in OPENROUTER_SPEND_HOME)"
    passed = gate.summarize(date(2026, 3, 2), "run-2", [rows["marts.toy:grain_unique"]], None)
    assert passed == "Data-quality gate passed for 2026-03-02 (run run-2): 1 expectations held."


def test_prune_keeps_the_newest_runs(tmp_path):
    for age, run in enumerate(["new", "mid", "old"]):
        page = tmp_path / "docs" / "validations" / "marts" / "toy" / run / "t" / "p.html"
        result = tmp_path / "results" / "2026-03-02" / f"{run}.json"
        for path in (page, result):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
            stamp = time.time() - 100 * age
            os.utime(path, (stamp, stamp))
            os.utime(path.parent, (stamp, stamp))
        os.utime(page.parent.parent, (time.time() - 100 * age,) * 2)
    assert gate.prune_outputs(tmp_path, keep_runs=2) == 2
    assert sorted(p.name for p in (tmp_path / "docs" / "validations" / "marts" / "toy").iterdir()) == ["mid", "new"]
    assert sorted(p.stem for p in (tmp_path / "results" / "2026-03-02").iterdir()) == ["mid", "new"]


def test_a_day_validated_again_keeps_only_its_newest_page(tmp_path):
    day = tmp_path / "docs" / "validations" / "quality" / "gate" / "2026-03-02"
    for run_time in ("20260303T010000Z", "20260303T020000Z"):
        (day / run_time).mkdir(parents=True)
        (day / run_time / "warehouse-checks.html").write_text("x")
    assert gate.prune_outputs(tmp_path, keep_runs=5) == 1
    assert [p.name for p in day.iterdir()] == ["20260303T020000Z"]


def test_a_gate_that_cannot_run_still_marks_the_day_failed(tmp_path, monkeypatch):
    from marts_fixtures import FixtureWarehouse

    FixtureWarehouse(tmp_path)
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gate, "build_datasets", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        gate.validate_day(date(2026, 3, 2), "crash")
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    status, summary = con.execute("select status, summary from marts.fct_quality_runs where run_id = 'crash'").fetchone()
    assert status == "failed"
    assert summary == ("Data-quality gate FAILED for 2026-03-02 (run crash): the quality gate could not run: "
                       "RuntimeError: disk on fire")
    con.close()


def test_a_malformed_config_is_recorded_as_a_failed_run(tmp_path, monkeypatch):
    from marts_fixtures import FixtureWarehouse

    FixtureWarehouse(tmp_path)
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    config = tmp_path / "quality-config"
    config.mkdir()
    (config / "quality.yaml").write_text("freshness:\n  activity_window_days: -3\n")
    with pytest.raises(gate.QualityGateFailed) as caught:
        gate.validate_day(date(2026, 3, 2), "bad", config_dir=config)
    assert caught.value.summary.splitlines()[1] == (
        f"- [config] config:quality.yaml:valid: {config / 'quality.yaml'} line 2: "
        "freshness.activity_window_days: must be >= 1, got int -3")
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("select status, failed_count from marts.fct_quality_runs where run_id = 'bad'").fetchone() == (
        "failed", 1)
    assert con.execute("select check_id, success from marts.fct_quality_results where run_id = 'bad'").fetchall() == [
        ("config:quality.yaml:valid", False)]
    con.close()
