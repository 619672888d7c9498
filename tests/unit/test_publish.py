"""Publishing the analysts' copy: the copy holds exactly the warehouse's rows, and a bad copy never replaces a good one."""

from __future__ import annotations

import shutil
from datetime import timedelta

import duckdb
import pytest
from marts_fixtures import DAY, FixtureWarehouse, sample_rows

from openrouter_spend.warehouse import publish as publish_module
from openrouter_spend.warehouse.publish import catalog_fingerprint, publish_warehouse

DAYS = [DAY + timedelta(days=offset) for offset in range(4)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Four days of the sample organisation, loaded and rebuilt from raw (built once per module)."""
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("publish"))
    warehouse.load(sample_rows(DAYS))
    warehouse.rebuild()
    return warehouse


@pytest.fixture
def warehouse(built, tmp_path):
    return built.copy_to(tmp_path / "live")


def _tables(con) -> list[str]:
    return [f'"{schema}"."{name}"' for schema, name in con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database() "
        "and not internal order by all").fetchall()]


def test_the_published_copy_holds_every_row_view_and_comment_of_the_warehouse(warehouse, tmp_path):
    target = publish_warehouse(warehouse.path, tmp_path / "published" / "warehouse.duckdb")
    with duckdb.connect(str(target), read_only=True) as copy:
        copy.execute(f"attach '{warehouse.path}' as live (read_only)")
        tables = _tables(copy)
        assert len(tables) > 40 and '"marts"."fct_daily_spend"' in tables
        for table in tables:
            only_copy = copy.execute(f"select count(*) from (from {table} except all from live.{table})").fetchone()[0]
            only_live = copy.execute(f"select count(*) from (from live.{table} except all from {table})").fetchone()[0]
            assert (only_copy, only_live) == (0, 0), table
        spend_rows = copy.execute("select count(*) from marts.fct_daily_spend").fetchone()[0]
        assert spend_rows > 0
        views = "select schema_name, view_name, sql from duckdb_views() where not internal and database_name = ?"
        assert copy.execute(views, ["warehouse"]).fetchall() == copy.execute(views, ["live"]).fetchall()
        comments = "select table_name, comment from duckdb_tables() where schema_name = 'marts' and database_name = ?"
        assert sorted(copy.execute(comments, ["warehouse"]).fetchall()) == \
            sorted(copy.execute(comments, ["live"]).fetchall())
        # Staging views over raw work in the copy as in the warehouse.
        assert copy.execute("select count(*) from staging.stg_keys").fetchone()[0] == 4


def test_a_copy_that_does_not_match_the_warehouse_leaves_the_last_good_copy(warehouse, tmp_path, monkeypatch):
    target = publish_warehouse(warehouse.path, tmp_path / "published" / "warehouse.duckdb")
    good = target.read_bytes()
    stale = tmp_path / "stale.duckdb"
    shutil.copyfile(warehouse.path, stale)
    rows = sample_rows(DAYS)
    rows.use(DAYS[-1], "a-web", "vendor/pro", "P9", requests=5, usage=99.0)
    warehouse.load(rows, {DAYS[-1]})
    warehouse.build([DAYS[-1]])

    # A copy that came out as an older file (a torn or misdirected copy): the check refuses it.
    copy_file = shutil.copyfile
    monkeypatch.setattr(publish_module.shutil, "copyfile", lambda source, copy: copy_file(stale, copy))
    with pytest.raises(RuntimeError, match="differs from it") as failure:
        publish_warehouse(warehouse.path, target)
    assert "table marts.fct_daily_spend" in str(failure.value)
    assert target.read_bytes() == good
    assert sorted(p.name for p in target.parent.iterdir()) == ["warehouse.duckdb"]

    monkeypatch.undo()
    publish_warehouse(warehouse.path, target)
    with duckdb.connect(str(target), read_only=True) as copy:
        assert copy.execute("select count(*) from marts.fct_daily_spend where provider_name = 'P9'").fetchone()[0] == 1


def test_the_fingerprint_names_every_table_view_and_macro(warehouse):
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        fingerprint = catalog_fingerprint(con)
        spend_rows = con.execute("select count(*) from marts.fct_daily_spend").fetchone()[0]
    assert fingerprint["table marts.fct_daily_spend"] == spend_rows > 0
    assert "view staging.stg_keys" in fingerprint
    assert any(name.startswith("macro marts.") for name in fingerprint)
