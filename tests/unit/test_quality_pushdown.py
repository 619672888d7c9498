"""Checks computed in DuckDB: the same figures Great Expectations computes, the same failures, no table in pandas."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import duckdb
import pytest
from marts_fixtures import FixtureWarehouse
from test_quality_reconcile import D1, D2, D3, organisation

from openrouter_spend.quality import gate, metrics, reconcile
from openrouter_spend.quality.checks import Check, Dataset
from openrouter_spend.quality.config import QualityConfig
from openrouter_spend.warehouse import connect

DAY = date(2026, 3, 2)
ROWS = [  # project, usage_date, kind, spend_usd, requests, share, tolerance
    ("a", DAY, "release", 1.0, 3, 0.5, 1.0),
    ("a", DAY, "incident", 2.0, 1, 0.2, 0.1),  # the grain twice; tolerance below share
    ("b", DAY, "launch", -0.5, 2, 1.5, 2.0),  # negative money; a share above 1
    (None, DAY, "release", 0.0, 0, None, None),  # no project
    ("c", DAY, "party", 0.0, 5, 0.1, 0.3),  # not an accepted kind
    ("d", DAY, None, 1.0, None, 0.3, 0.3),
]
CHECKS = [
    Check("toy:grain_unique", "ExpectCompoundColumnsToBeUnique", {"column_list": ["project", "usage_date"]}, "grain"),
    Check("toy:project:not_null", "ExpectColumnValuesToNotBeNull", {"column": "project"}, "not null"),
    Check("toy:project:unique", "ExpectColumnValuesToBeUnique", {"column": "project"}, "unique"),
    Check("toy:kind:accepted_values", "ExpectColumnValuesToBeInSet",
          {"column": "kind", "value_set": ["release", "incident", "launch"]}, "accepted"),
    Check("toy:kind:not_party", "ExpectColumnValuesToNotBeInSet", {"column": "kind", "value_set": ["party"]}, "no party"),
    Check("toy:spend_usd:non_negative", "ExpectColumnValuesToBeBetween", {"column": "spend_usd", "min_value": 0}, "money"),
    Check("toy:share:share_in_0_1", "ExpectColumnValuesToBeBetween",
          {"column": "share", "min_value": 0, "max_value": 1}, "share"),
    Check("toy:requests:non_negative", "ExpectColumnValuesToBeBetween", {"column": "requests", "min_value": 0}, "volume"),
    Check("toy:within", "ExpectColumnPairValuesAToBeGreaterThanB",
          {"column_A": "tolerance", "column_B": "share", "or_equal": True}, "within tolerance"),
    Check("toy:row_count", "ExpectTableRowCountToBeBetween", {"min_value": 7, "max_value": 9}, "rows"),
    Check("toy:row_count_exact", "ExpectTableRowCountToEqual", {"value": 6}, "six rows"),
    Check("toy:kinds", "ExpectColumnUniqueValueCountToBeBetween", {"column": "kind", "max_value": 3}, "kinds"),
    Check("toy:kinds_present", "ExpectColumnDistinctValuesToContainSet",
          {"column": "kind", "value_set": ["release", "launch"]}, "kinds present"),
    Check("toy:kinds_all_present", "ExpectColumnDistinctValuesToContainSet",
          {"column": "kind", "value_set": ["release", "gone"]}, "a kind missing"),
]


@pytest.fixture(scope="module")
def toy():
    con = duckdb.connect(":memory:")
    con.execute("create table toy (project varchar, usage_date date, kind varchar, spend_usd double, requests bigint, "
                "share double, tolerance double)")
    con.executemany("insert into toy values (?, ?, ?, ?, ?, ?, ?)", ROWS)
    yield con
    con.close()


def great_expectations_on_the_frame(frame) -> dict[str, dict]:
    """What the gate recorded before the checks moved to DuckDB: GX's own SUMMARY results on the whole frame."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    batch = context.data_sources.add_pandas("p").add_dataframe_asset("toy").add_batch_definition_whole_dataframe("d")
    suite = context.suites.add(gx.ExpectationSuite(name="toy", expectations=[
        getattr(gxe, check.expectation)(**check.kwargs, meta={"check_id": check.check_id}) for check in CHECKS]))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="toy", data=batch, suite=suite))
    outcome = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    return {r.expectation_config.meta["check_id"]: {"success": r.success, **r.result} for r in outcome.results}


def test_figures_computed_in_duckdb_equal_great_expectations_on_the_same_rows(toy, tmp_path):
    expected = great_expectations_on_the_frame(toy.execute("select * from toy").df())
    columns = [row[0] for row in toy.execute("select * from toy limit 0").description]
    dataset = Dataset("toy", "marts", None, CHECKS, ["project", "usage_date"], source="select * from toy",
                      columns=columns)
    rows = {row["check_id"]: row for row in gate.run_datasets([dataset], "r", datetime(2026, 3, 3, tzinfo=UTC),
                                                             tmp_path / "docs", QualityConfig(), toy)}
    assert set(rows) == set(expected) == {check.check_id for check in CHECKS}
    for check_id, result in expected.items():
        row = rows[check_id]
        assert row["success"] is result["success"], check_id
        assert row["element_count"] == result.get("element_count"), check_id
        assert row["unexpected_count"] == result.get("unexpected_count"), check_id
        assert row["unexpected_percent"] == pytest.approx(result.get("unexpected_percent")), check_id
        if "unexpected_count" not in result and not check_id.startswith("toy:kinds_"):  # GX lists no set's values
            assert json.loads(row["observed_value"]) == result["observed_value"], check_id
    failed = {check_id for check_id, row in rows.items() if not row["success"]}
    assert failed == {"toy:grain_unique", "toy:project:not_null", "toy:project:unique", "toy:kind:accepted_values",
                      "toy:kind:not_party", "toy:spend_usd:non_negative", "toy:share:share_in_0_1", "toy:within",
                      "toy:row_count", "toy:kinds", "toy:kinds_all_present"}
    assert (rows["toy:grain_unique"]["unexpected_count"], rows["toy:grain_unique"]["element_count"]) == (2, 6)
    assert rows["toy:kind:accepted_values"]["unexpected_percent"] == pytest.approx(20.0)  # 1 of the 5 with a kind
    assert json.loads(rows["toy:spend_usd:non_negative"]["unexpected_sample"]) == [
        {"spend_usd": -0.5, "project": "b", "usage_date": "2026-03-02"}]
    assert json.loads(rows["toy:within"]["unexpected_sample"]) == [
        {"tolerance": 0.1, "project": "a", "usage_date": "2026-03-02", "share": 0.2}]


def test_a_frame_and_a_table_with_the_same_rows_give_the_same_results(toy, tmp_path):
    frame = toy.execute("select * from toy").df()
    as_table = Dataset("toy", "marts", None, CHECKS, ["project"], source="select * from toy", columns=list(frame.columns))
    as_frame = Dataset("toy", "marts", frame, CHECKS, ["project"])
    at = datetime(2026, 3, 3, tzinfo=UTC)
    from_table = gate.run_datasets([as_table], "r", at, tmp_path / "a", QualityConfig(), toy)
    from_frame = gate.run_datasets([as_frame], "r", at, tmp_path / "b", QualityConfig())
    assert [(r["check_id"], r["success"], r["element_count"], r["unexpected_count"]) for r in from_table] == [
        (r["check_id"], r["success"], r["element_count"], r["unexpected_count"]) for r in from_frame]


@pytest.fixture
def corrupted(tmp_path, monkeypatch):
    """A fixture warehouse whose D2 breaks a not-null, an accepted value, a grain and a reconciliation."""
    house = FixtureWarehouse(tmp_path)
    house.load(organisation())
    house.build([D1, D2, D3])
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "False")
    with connect(house.path) as con:
        con.execute("insert into raw.activity select * from raw.activity where partition_date = ? and scope = 'key' "
                    "limit 1", [D2])
        con.execute("""update raw.activity set payload = json_merge_patch(payload, '{"provider_name": null}') """
                    "where partition_date = ? and scope = 'account' and payload ->> 'provider_name' = 'P1'", [D2])
        con.execute("update marts.fct_daily_spend set premium_reason = 'bogus' "
                    "where usage_date = ? and api_key_hash = '(unattributed)'", [D2])
        con.execute("update marts.fct_daily_spend set spend_usd = spend_usd + 1 "
                    "where usage_date = ? and api_key_hash = '(unattributed)'", [D2])
    return house


def test_a_violating_row_fails_the_gate_with_the_check_name_and_counts(corrupted):
    with pytest.raises(gate.QualityGateFailed) as caught:
        gate.validate_day(D2, "broken")
    with connect(corrupted.path) as con:
        rows = {row[0]: row[1:] for row in con.execute(
            "select check_id, success, element_count, unexpected_count, unexpected_sample from marts.fct_quality_results "
            "where run_id = 'broken'").fetchall()}
    failed = {check_id for check_id, row in rows.items() if not row[0]}
    assert {"raw.activity:grain_unique", "raw.activity:provider_name:not_null",
            "staging.stg_account_activity:provider_name:not_null", "marts.fct_daily_spend:premium_reason:accepted_values",
            "reconcile.marts_vs_account:spend_matches_account"} <= failed
    assert rows["raw.activity:grain_unique"][1:3] == (5, 2)  # the duplicated row and its original
    assert rows["raw.activity:provider_name:not_null"][1:3] == (5, 1)
    assert rows["marts.fct_daily_spend:premium_reason:accepted_values"][1:3] == (3, 1)
    assert json.loads(rows["marts.fct_daily_spend:premium_reason:accepted_values"][3])[0]["premium_reason"] == "bogus"
    assert rows["reconcile.marts_vs_account:spend_matches_account"][1:3] == (1, 1)
    assert "- [reconciliation] reconcile.marts_vs_account:spend_matches_account: mart spend does not add up" in \
        caught.value.summary


def test_no_table_is_read_into_pandas(corrupted, monkeypatch):
    with connect(corrupted.path) as con:  # a large raw partition: 5,000 listings of each model
        con.execute("insert into raw.models select partition_date, run_id, fetched_at, landing_file, request_params, "
                    "model_id || '-' || i, payload from raw.models, range(5000) as t(i) where partition_date = ?", [D2])
        listed = con.execute("select count(*) from raw.models where partition_date = ?", [D2]).fetchone()[0]
    handed: dict[str, int | None] = {}
    figures: list[int] = []
    measure, judge, frame_of = metrics.measure, gate._judge_with_gx, reconcile.frame_of

    def spy_measure(con, dataset):
        handed[dataset.name] = None if dataset.frame is None else len(dataset.frame)
        return measure(con, dataset)

    def spy_judge(rows, *args):
        figures.append(len(rows))
        return judge(rows, *args)

    def spy_frame_of(con, sql, params=None):
        frame = frame_of(con, sql, params)
        assert len(frame) < 100, sql
        return frame

    monkeypatch.setattr(metrics, "measure", spy_measure)
    monkeypatch.setattr(gate, "_judge_with_gx", spy_judge)
    monkeypatch.setattr(reconcile, "frame_of", spy_frame_of)
    with pytest.raises(gate.QualityGateFailed):
        gate.validate_day(D2, "large")
    tables = [name for name in handed if name.split(".")[0] in ("raw", "staging", "marts")]
    assert len(tables) > 30 and all(handed[name] is None for name in tables)  # named by SQL, never a frame
    assert max(size for size in handed.values() if size is not None) < 1000  # catalogs and reconciliations
    with connect(corrupted.path) as con:
        checks, models = con.execute(
            "select count(*), max(element_count) filter (where check_id = 'raw.models:grain_unique') "
            "from marts.fct_quality_results where run_id = 'large'").fetchone()
    assert figures == [checks]  # GX sees one row per check, in one batch
    assert models == listed > 10_000  # and the checks saw every row
