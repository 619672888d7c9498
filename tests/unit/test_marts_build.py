"""Building marts: idempotent, incremental by partition, atomic, documented, and published as a read-only copy."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import duckdb
import pytest
from marts_fixtures import DAY, FixtureWarehouse, sample_rows

from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.warehouse import connect
from openrouter_spend.warehouse import marts as marts_module
from openrouter_spend.warehouse.dictionary import DICTIONARY_PATH, empty_warehouse, render_data_dictionary
from openrouter_spend.warehouse.marts import affected_days
from openrouter_spend.warehouse.publish import publish_warehouse

DAYS = [DAY + timedelta(days=offset) for offset in range(12)]
CONTRACT = {
    "fct_daily_spend": "usage_date api_key_hash api_key_name workspace_id project team budget_owner is_owned model "
                       "model_permaslug provider_name is_premium requests prompt_tokens completion_tokens "
                       "reasoning_tokens cached_tokens spend_usd byok_spend_usd",
    "fct_credit_balance": "as_of_date total_credits_usd total_usage_usd balance_usd burn_usd topup_usd "
                          "burn_7d_avg_usd runway_days",
    "fct_provider_mix_daily": "usage_date project provider_name spend_usd requests spend_share request_share",
    "fct_generations": "generation_id created_at usage_date project workflow api_key_hash requested_model "
                       "served_model provider_name attempts is_fallback fallback_kind cost_usd is_accepted",
    "fct_fallback_daily": "usage_date project workflow requests fallback_requests fallback_share spend_usd "
                          "fallback_spend_usd fallback_extra_cost_usd",
    "rpt_unit_economics_daily": "usage_date project spend_usd requests total_tokens cost_per_request_usd "
                                "cost_per_1k_tokens_usd tokens_per_request premium_spend_share "
                                "fallback_request_share generation_coverage_share accepted_results "
                                "cost_per_accepted_result_usd",
    "rpt_spend_change": "usage_date project spend_usd prior_spend_usd delta_usd volume_effect_usd "
                        "context_effect_usd mix_price_effect_usd waste_effect_usd",
    "dim_api_key": "api_key_hash api_key_name workspace_id project team budget_owner is_owned is_disabled "
                   "limit_usd usage_usd last_used_at is_unused",
    "dim_model": "model model_permaslug prompt_price_per_mtok_usd completion_price_per_mtok_usd is_premium",
    "fct_alerts": "alert_id rule_id usage_date severity project budget_owner metric observed_value expected_value "
                  "threshold_value impact_usd explanation status channels first_seen_date",
}


@pytest.fixture(scope="module")
def built_daily(tmp_path_factory):
    """Twelve days loaded and built one day at a time, as the daily DAG does (built once per module)."""
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("daily"))
    rows = sample_rows(DAYS)
    for day in DAYS:
        warehouse.load(rows, {day})
        warehouse.build([day])
    return warehouse


@pytest.fixture
def daily(built_daily, tmp_path):
    """A private copy of the day-by-day warehouse and the fixture rows it was built from."""
    return built_daily.copy_to(tmp_path / "daily"), sample_rows(DAYS)


def test_day_by_day_builds_equal_a_full_rebuild_and_rebuilding_changes_nothing(daily):
    warehouse, _ = daily
    incremental = warehouse.snapshot()
    assert all(incremental[name] for name in incremental)
    warehouse.build([DAYS[-1]])
    assert warehouse.snapshot() == incremental
    warehouse.rebuild()
    assert warehouse.snapshot() == incremental
    warehouse.rebuild()
    assert warehouse.snapshot() == incremental


def test_a_daily_build_rewrites_only_the_partitions_its_day_reaches(daily):
    warehouse, _ = daily
    with connect(warehouse.path) as con:
        con.execute("update marts.fct_daily_spend set spend_usd = -1 where usage_date = ?", [DAYS[0]])
        con.execute("update marts.fct_credit_balance set burn_usd = -1 where as_of_date = ?", [DAYS[-1]])
    counts = warehouse.build([DAYS[-1]])
    untouched = warehouse.rows("select count(*) as n from marts.fct_daily_spend where spend_usd = -1")
    assert untouched == [{"n": warehouse.rows("select count(*) as n from marts.fct_daily_spend "
                                              "where usage_date = ?", [DAYS[0]])[0]["n"]}]
    assert warehouse.rows("select burn_usd from marts.fct_credit_balance where as_of_date = ?", [DAYS[-1]])[0][
        "burn_usd"] > 0
    assert counts["fct_credit_balance"] == 1
    assert counts["fct_daily_spend"] == warehouse.rows(
        "select count(*) as n from marts.fct_daily_spend where usage_date = ?", [DAYS[-1]])[0]["n"]


def test_a_late_repull_is_rebuilt_with_every_window_that_reads_it(daily, tmp_path):
    warehouse, rows = daily
    rows.use(DAYS[3], "a-web", "vendor/pro", "P9", requests=50, usage=40.0)
    warehouse.load(rows, {DAYS[3]})
    warehouse.build([DAYS[-1]])
    after_late_day = warehouse.snapshot()
    log = warehouse.rows("select rebuilt_days from marts.build_log order by build_id desc limit 1")[0]
    assert log["rebuilt_days"] == [DAYS[3], DAYS[-1]]

    fresh = FixtureWarehouse(tmp_path / "fresh")
    fresh.load(rows)
    fresh.rebuild()
    assert after_late_day == fresh.snapshot()


def test_reach_of_a_changed_day_per_mart():
    by_name = {mart.name: mart for mart in marts_module.MARTS}
    candidates = [DAY + timedelta(days=offset) for offset in range(40)]
    assert affected_days(by_name["fct_daily_spend"], [DAY], candidates) == [DAY]
    assert affected_days(by_name["fct_credit_balance"], [DAY], candidates) == candidates[:7]
    assert affected_days(by_name["rpt_spend_change"], [DAY], candidates) == candidates[:15]
    # 2 March reaches the end of March for month-to-date figures.
    assert affected_days(by_name["rpt_budget_status_daily"], [DAY], candidates)[-1].isoformat() == "2026-03-31"


def test_a_failing_build_leaves_the_previous_marts_intact(daily, tmp_path, monkeypatch):
    warehouse, _ = daily
    before = warehouse.snapshot()
    broken_sql = tmp_path / "sql"
    (broken_sql / "marts").mkdir(parents=True)
    for mart in marts_module.MARTS:
        (broken_sql / "marts" / f"{mart.name}.sql").write_text(mart.sql_path.read_text())
    (broken_sql / "marts" / "schema.yml").write_text((marts_module.settings.sql_dir() / "marts" / "schema.yml")
                                                     .read_text())
    (broken_sql / "migrations").symlink_to(marts_module.settings.sql_dir() / "migrations")
    (broken_sql / "marts" / "inputs").symlink_to(marts_module.settings.sql_dir() / "marts" / "inputs")
    (broken_sql / "marts" / "rpt_spend_change.sql").write_text("select no_such_column from marts.fct_daily_spend")
    monkeypatch.setattr(marts_module.settings, "sql_dir", lambda: broken_sql)
    with pytest.raises(RuntimeError, match="rpt_spend_change"):
        warehouse.rebuild()
    with pytest.raises(RuntimeError, match="rpt_spend_change"):
        warehouse.build([DAYS[-1]])
    monkeypatch.undo()
    assert warehouse.snapshot() == before
    assert warehouse.rows("select count(*) as n from marts.build_log") == [{"n": len(DAYS)}]


def test_a_config_error_stops_the_build_before_it_writes(daily):
    warehouse, _ = daily
    before = warehouse.snapshot()
    owners = warehouse.config_dir / "owners.yaml"
    owners.write_text(owners.read_text().replace("daily: 10", "daily: lots"))
    with pytest.raises(ConfigError, match=r"owners\.yaml line \d+: projects\.alpha\.budgets_usd\.daily: expected a number"):
        warehouse.build([DAYS[-1]])
    assert warehouse.snapshot() == before


def test_every_contract_table_column_and_config_table_is_commented(daily):
    warehouse, _ = daily
    with connect(warehouse.path, read_only=True) as con:
        columns = {}
        for schema, table, column, comment in con.execute(
                "select schema_name, table_name, column_name, comment from duckdb_columns() "
                "where schema_name in ('marts', 'config')").fetchall():
            columns.setdefault((schema, table), {})[column] = comment
        table_comments = dict(((s, t), c) for s, t, c in con.execute(
            "select schema_name, table_name, comment from duckdb_tables() "
            "where schema_name in ('marts', 'config')").fetchall())
    for table, wanted in CONTRACT.items():
        assert set(wanted.split()) <= set(columns[("marts", table)]), table
    assert all(table_comments.values()), [t for t, c in table_comments.items() if not c]
    assert not [(t, c) for t, cols in columns.items() for c, comment in cols.items() if not comment]
    assert warehouse.rows("select count(*) as n from marts.fct_generations") == [{"n": 0}]


def test_the_data_dictionary_in_docs_is_current():
    with empty_warehouse() as con:
        assert DICTIONARY_PATH.read_text() == render_data_dictionary(con), \
            "run: .venv/bin/python -m openrouter_spend.warehouse.dictionary"


def test_publish_makes_an_atomic_read_only_copy_that_open_readers_survive(daily, tmp_path):
    warehouse, rows = daily
    target = tmp_path / "published" / "warehouse.duckdb"
    assert publish_warehouse(warehouse.path, target) == target
    assert not stat.S_IMODE(os.stat(target).st_mode) & 0o222
    reader = duckdb.connect(str(target), read_only=True)
    first = reader.execute("select count(*), marts.exact_sum(spend_usd) from marts.fct_daily_spend").fetchone()
    live = warehouse.rows("select count(*) as n, marts.exact_sum(spend_usd) as s from marts.fct_daily_spend")[0]
    assert first == (live["n"], live["s"])
    comment = reader.execute("select comment from duckdb_tables() where table_name = 'fct_daily_spend'").fetchone()
    assert comment[0]

    rows.use(DAYS[-1], "a-web", "vendor/pro", "P9", requests=5, usage=99.0)
    warehouse.load(rows, {DAYS[-1]})
    warehouse.build([DAYS[-1]])
    publish_warehouse(warehouse.path, target)
    assert reader.execute("select count(*), marts.exact_sum(spend_usd) from marts.fct_daily_spend").fetchone() == first
    reader.close()
    with duckdb.connect(str(target), read_only=True) as fresh:
        latest = fresh.execute("select marts.exact_sum(spend_usd) from marts.fct_daily_spend").fetchone()[0]
        assert latest == pytest.approx(first[1] + 99.0)
        assert fresh.execute("select count(*) from staging.stg_activity").fetchone()[0] > 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["warehouse.duckdb"]


@pytest.fixture
def sql_copy(tmp_path, monkeypatch):
    """A copy of sql/ the test may edit, read by the build."""
    import shutil

    folder = tmp_path / "sql"
    shutil.copytree(marts_module.settings.sql_dir(), folder)
    monkeypatch.setattr(marts_module.settings, "sql_dir", lambda: folder)
    return folder


def test_a_column_added_to_a_mart_select_reaches_every_day_and_leaves_when_removed(daily, sql_copy):
    warehouse, _ = daily
    select = sql_copy / "marts" / "fct_credit_balance.sql"
    schema = sql_copy / "marts" / "schema.yml"
    original_select, original_schema = select.read_text(), schema.read_text()
    select.write_text(original_select.replace(
        "\nselect * from final", "\nselect *, cast(burn_usd * 2 as decimal(18, 6)) as double_burn_usd from final"))
    schema.write_text(original_schema.replace(
        "      as_of_date: ", "      double_burn_usd: Twice the burn (a column added by its SELECT alone).\n"
        "      as_of_date: ", 1))
    warehouse.build([DAYS[-1]])  # an incremental build of one day
    described = {row["column_name"]: row["column_type"] for row in warehouse.rows("describe marts.fct_credit_balance")}
    assert described["double_burn_usd"] == "DECIMAL(18,6)"
    assert described["as_of_date"] == "DATE"  # the migration's columns keep their types
    rows = warehouse.rows("select as_of_date, burn_usd, double_burn_usd from marts.fct_credit_balance")
    assert {row["as_of_date"] for row in rows} == set(DAYS)  # every day, not only the one built
    assert all(float(row["double_burn_usd"]) == pytest.approx(row["burn_usd"] * 2, abs=1e-6)
               for row in rows if row["burn_usd"] is not None)

    select.write_text(original_select)
    schema.write_text(original_schema)
    warehouse.build([DAYS[-1]])
    assert "double_burn_usd" not in {row["column_name"] for row in warehouse.rows("describe marts.fct_credit_balance")}


def test_a_missing_mart_table_is_created_from_its_select(daily):
    warehouse, _ = daily
    before = warehouse.rows("select * from marts.dim_annotation order by all")
    with connect(warehouse.path) as con:
        con.execute("drop table marts.dim_annotation")
    warehouse.build([DAYS[-1]])
    assert warehouse.rows("select * from marts.dim_annotation order by all") == before != []


class _RecordingConnection:
    """A warehouse connection that notes every statement run through it."""

    def __init__(self, con):
        self._con = con
        self.statements: list[str] = []

    def execute(self, sql, *args):
        self.statements.append(sql)
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _build_recording(warehouse, day) -> list[str]:
    """Build the day's marts; the SQL files of the marts whose SELECT the build described."""
    with connect(warehouse.path) as con:
        recording = _RecordingConnection(con)
        marts_module.build_marts(recording, [day], config_dir=warehouse.config_dir)
    described = [sql for sql in recording.statements if sql.lstrip().lower().startswith("describe")]
    return [mart.name for mart in marts_module.MARTS
            if any(sql.endswith(mart.sql_path.read_text()) for sql in described)]


def _shape_keys(warehouse) -> dict[str, str]:
    return {row["mart_name"]: row["shape_key"] for row in warehouse.rows("select * from meta.mart_shapes")}


def test_a_changed_mart_select_is_reshaped_and_an_unchanged_one_is_not_described_again(daily, sql_copy):
    warehouse, _ = daily
    keys = _shape_keys(warehouse)
    assert set(keys) == {mart.name for mart in marts_module.MARTS}

    assert _build_recording(warehouse, DAYS[-1]) == []  # nothing changed: no SELECT is described
    assert _shape_keys(warehouse) == keys

    select = sql_copy / "marts" / "fct_credit_balance.sql"
    schema = sql_copy / "marts" / "schema.yml"
    select.write_text(select.read_text().replace(
        "\nselect * from final", "\nselect *, burn_usd > 0 as is_burning from final"))
    schema.write_text(schema.read_text().replace(
        "      as_of_date: ", "      is_burning: Whether credits were spent (a column added by its SELECT).\n"
        "      as_of_date: ", 1))
    assert _build_recording(warehouse, DAYS[-1]) == ["fct_credit_balance"]
    assert "is_burning" in {row["column_name"] for row in warehouse.rows("describe marts.fct_credit_balance")}
    changed = _shape_keys(warehouse)
    assert {name for name in keys if changed[name] != keys[name]} == {"fct_credit_balance"}

    assert _build_recording(warehouse, DAYS[-1]) == []  # the new SELECT is described once


def test_a_mart_table_altered_outside_its_select_is_shaped_again(daily):
    warehouse, _ = daily
    with connect(warehouse.path) as con:
        con.execute("alter table marts.dim_model add column stray_column integer")
    assert _build_recording(warehouse, DAYS[-1]) == ["dim_model"]
    assert "stray_column" not in {row["column_name"] for row in warehouse.rows("describe marts.dim_model")}
