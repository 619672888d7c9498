"""The keys' usage_daily typed at load: the loader writes it, migration 016 backfills it, stg_credits sums it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest
from test_load import DAY, KEY_A, KEY_B, land

from openrouter_spend.config import settings
from openrouter_spend.ingest.load import LandingDataError, load_partition
from openrouter_spend.warehouse import build_staging, connect, migrate

ON_TIME = datetime(2026, 11, 11, 0, 10, tzinfo=UTC)


def keys_day(home, run_id: str, keys: list[dict]) -> None:
    land(home, run_id, [
        ("/credits", {}, {"data": {"total_credits": 100.0, "total_usage": 40.0}}),
        ("/keys", {"workspace_id": "ws1"}, {"data": keys}),
    ])


def test_the_load_types_usage_daily_and_stg_credits_sums_it(tmp_path):
    keys_day(tmp_path, "run1", [{"hash": KEY_A, "usage": 30.0, "usage_daily": 1.25},
                                {"hash": KEY_B, "usage": 5.0, "usage_daily": 2}, {"hash": "c" * 64}])
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        build_staging(con)
        load_partition(con, tmp_path, DAY, "run1")
        assert dict(con.execute("select key_hash, usage_daily from raw.keys").fetchall()) == {
            KEY_A: 1.25, KEY_B: 2.0, "c" * 64: None}
        # Fetched during the next day: the end of the day is the total less what the keys spent since midnight.
        assert con.execute("select usage_today_usd, end_of_day_usage_usd from staging.stg_credits").fetchone() == (
            3.25, 36.75)


def test_a_usage_daily_that_is_not_a_number_is_refused_at_load(tmp_path):
    keys_day(tmp_path, "run1", [{"hash": KEY_A, "usage_daily": "lots"}])
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        with pytest.raises(LandingDataError, match=r"data\[0\]\.usage_daily should be a number"):
            load_partition(con, tmp_path, DAY, "run1")
        assert con.execute("select count(*) from raw.keys").fetchone()[0] == 0


def migrations_before(tmp_path, version: int):
    """A folder with the project's migrations older than `version`: a warehouse as it was before it."""
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted((settings.sql_dir() / "migrations").glob("*.sql")):
        if int(path.name[:3]) < version:
            shutil.copy(path, before / path.name)
    return before


def test_migration_016_backfills_usage_daily_from_rows_loaded_before_it(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con, migrations_before(tmp_path, 16))
        assert "usage_daily" not in {row[0] for row in con.execute("describe raw.keys").fetchall()}
        for key, payload in ((KEY_A, {"hash": KEY_A, "usage": 30.0, "usage_daily": 1.5}),
                             (KEY_B, {"hash": KEY_B, "usage": 5.0, "usage_daily": None}),
                             ("c" * 64, {"hash": "c" * 64, "usage_daily": 0.75})):
            con.execute("insert into raw.keys values (?, 'old-run', ?, 'f.json', '{}', null, 0, ?, ?)",
                        [DAY, ON_TIME, key, json.dumps(payload)])
        con.execute("insert into raw.credits values (?, 'old-run', ?, 'f.json', '{}', 100.0, 40.0, '{}')",
                    [DAY, ON_TIME])
        assert migrate(con) == [16, 17]
        build_staging(con)
        assert dict(con.execute("select key_hash, usage_daily from raw.keys").fetchall()) == {
            KEY_A: 1.5, KEY_B: None, "c" * 64: 0.75}
        assert con.execute("select usage_today_usd, end_of_day_usage_usd from staging.stg_credits").fetchone() == (
            2.25, 37.75)
        # Nothing stored is lost: the payloads are as they were.
        assert con.execute("select count(*) from raw.keys where payload ->> 'hash' = key_hash").fetchone()[0] == 3
