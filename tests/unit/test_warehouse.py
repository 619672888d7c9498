"""Migrations: ordered, recorded, idempotent, transactional."""

from __future__ import annotations

import pytest

from openrouter_spend.warehouse import build_staging, connect, migrate
from openrouter_spend.warehouse.migrations import discover_migrations


def test_project_migrations_apply_once_and_are_recorded(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        applied = migrate(con)
        assert applied == [m.version for m in discover_migrations()]
        assert migrate(con) == []
        recorded = con.execute("select version from meta.schema_migrations order by 1").fetchall()
        assert [v for (v,) in recorded] == applied
        tables = {t for (t,) in con.execute(
            "select table_schema || '.' || table_name from information_schema.tables").fetchall()}
        assert {"raw.activity", "raw.keys", "raw.credits", "meta.extraction_gaps"} <= tables


def test_staging_views_build_on_an_empty_warehouse(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        views = build_staging(con)
        assert {"stg_activity", "stg_keys", "stg_credits", "stg_models"} <= set(views)
        assert con.execute("select count(*) from staging.stg_activity").fetchone()[0] == 0


def test_a_failing_migration_is_rolled_back_and_named(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_ok.sql").write_text("create schema if not exists s; create table s.a (x int);")
    (folder / "002_broken.sql").write_text("create table s.b (x int); select * from no_such_table;")
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(RuntimeError, match="002_broken.sql"):
            migrate(con, folder)
        assert [v for (v,) in con.execute("select version from meta.schema_migrations").fetchall()] == [1]
        assert con.execute("select count(*) from information_schema.tables where table_name = 'b'").fetchone()[0] == 0


def test_badly_named_or_duplicate_migrations_are_rejected(tmp_path):
    (tmp_path / "1_x.sql").write_text("select 1")
    with pytest.raises(ValueError, match="NNN_lowercase_words"):
        discover_migrations(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "001_a.sql").write_text("select 1")
    (tmp_path / "001_b.sql").write_text("select 1")
    with pytest.raises(ValueError, match="also used by"):
        discover_migrations(tmp_path)


def test_views_are_created_after_the_views_they_read(tmp_path):
    from openrouter_spend.warehouse.staging import dependency_order

    files = {}
    for name, sql in {"a_top": "select * from staging.z_base join staging.m_mid using (x)",
                      "m_mid": "select * from staging.z_base", "z_base": "select 1 as x"}.items():
        files[name] = tmp_path / f"{name}.sql"
        files[name].write_text(sql)
    assert [p.stem for p in dependency_order(list(files.values()), "staging")] == ["z_base", "m_mid", "a_top"]
    files["z_base"].write_text("select * from staging.a_top")
    with pytest.raises(ValueError, match="cycle"):
        dependency_order(list(files.values()), "staging")
