"""Each key's newest /keys fetch per partition flagged at load: the loader sets it, reruns keep one, migration 017
backfills it with the rule stg_key_snapshots' pick used, ties go to the row loaded first."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from test_history_credits import migrations_before
from test_load import DAY, KEY_A, KEY_B

from openrouter_spend.ingest.landing import LandingBatch
from openrouter_spend.ingest.load import load_partition
from openrouter_spend.ingest.responses import RawResponse
from openrouter_spend.warehouse import build_staging, connect, migrate

FETCHED = datetime(2026, 11, 11, 0, 10, tzinfo=UTC)
KEY_C = "c" * 64
# stg_key_snapshots' pick before the flag: each partition's and key's newest fetch by a window over raw.keys.
WINDOW_PICK = """
    select partition_date, key_hash, fetched_at, payload ->> 'usage' as usage
    from raw.keys
    where rowid in (select arg_max(rowid, fetched_at) from raw.keys group by partition_date, key_hash)
"""


def land_keys(home, run_id: str, pages: list[tuple[int, datetime, list[dict]]]) -> None:
    """One committed batch of /keys pages, each (offset, fetched_at, items)."""
    batch = LandingBatch(home, DAY, run_id, "fixture")
    batch.land(RawResponse("/credits", {}, 200, json.dumps({"data": {"total_credits": 100.0, "total_usage": 40.0}})
                           .encode(), "application/json", FETCHED, 0.01, 1))
    for offset, fetched_at, items in pages:
        batch.land(RawResponse("/keys", {"workspace_id": "ws1", "offset": str(offset)}, 200,
                               json.dumps({"data": items}).encode(), "application/json", fetched_at, 0.01, 1))
    batch.commit()


@contextmanager
def loaded(tmp_path, *runs: str):
    """The warehouse after loading the day's landed `runs` one after another."""
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        build_staging(con)
        for run_id in runs:
            load_partition(con, tmp_path, DAY, run_id)
        yield con


def flags(con) -> list[tuple]:
    return con.execute("select key_hash, payload ->> 'usage', is_latest_fetch from raw.keys order by rowid").fetchall()


def snapshots(con) -> dict[str, float]:
    return dict(con.execute("select api_key_hash, usage_usd from staging.stg_key_snapshots").fetchall())


def test_the_load_flags_each_keys_newest_fetch_and_staging_reads_only_those(tmp_path):
    later = FETCHED + timedelta(minutes=5)
    land_keys(tmp_path, "run1", [
        (0, later, [{"hash": KEY_A, "usage": 2.0}, {"hash": KEY_B, "usage": 5.0}]),
        (100, FETCHED, [{"hash": KEY_A, "usage": 1.0}, {"hash": KEY_C, "usage": 9.0}]),
    ])
    with loaded(tmp_path, "run1") as con:
        assert flags(con) == [(KEY_A, "2.0", True), (KEY_B, "5.0", True), (KEY_A, "1.0", False),
                              (KEY_C, "9.0", True)]
        assert snapshots(con) == {KEY_A: 2.0, KEY_B: 5.0, KEY_C: 9.0}


def test_a_day_loaded_again_keeps_exactly_one_newest_fetch_per_key(tmp_path):
    land_keys(tmp_path, "run1", [(0, FETCHED, [{"hash": KEY_A, "usage": 1.0}, {"hash": KEY_B, "usage": 5.0}])])
    rerun = FETCHED + timedelta(hours=2)
    land_keys(tmp_path, "run2", [(0, rerun, [{"hash": KEY_A, "usage": 3.0}]),
                                 (100, rerun - timedelta(minutes=1), [{"hash": KEY_A, "usage": 2.5}])])
    with loaded(tmp_path, "run1", "run2") as con:
        # The rerun replaces the partition: run1's rows (and their flags) are gone, one fetch per key is newest.
        assert flags(con) == [(KEY_A, "3.0", True), (KEY_A, "2.5", False)]
        assert snapshots(con) == {KEY_A: 3.0}
        load_partition(con, tmp_path, DAY, "run1")
        assert flags(con) == [(KEY_A, "1.0", True), (KEY_B, "5.0", True)]
        assert snapshots(con) == {KEY_A: 1.0, KEY_B: 5.0}


def test_of_fetches_at_the_same_time_the_one_loaded_first_is_the_newest(tmp_path):
    land_keys(tmp_path, "run1", [
        (0, FETCHED, [{"hash": KEY_A, "usage": 1.0}, {"hash": KEY_A, "usage": 1.5}]),
        (100, FETCHED, [{"hash": KEY_A, "usage": 2.0}, {"hash": KEY_B, "usage": 5.0}]),
    ])
    with loaded(tmp_path, "run1") as con:
        assert flags(con) == [(KEY_A, "1.0", True), (KEY_A, "1.5", False), (KEY_A, "2.0", False),
                              (KEY_B, "5.0", True)]
        assert snapshots(con) == {KEY_A: 1.0, KEY_B: 5.0}


def test_migration_017_backfills_the_flag_with_the_windows_choice(tmp_path):
    rows = []
    for day_offset in range(3):
        day = DAY + timedelta(days=day_offset)
        fetched = FETCHED + timedelta(days=day_offset)
        for key, usage, late in ((KEY_A, 1.0, 0), (KEY_A, 2.0, 30), (KEY_A, 1.5, 10), (KEY_B, 5.0, 0),
                                 (KEY_C, 9.0, 20), (KEY_C, 8.0, 20)):
            rows.append((day, fetched + timedelta(minutes=late), key, usage + day_offset))
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con, migrations_before(tmp_path, 17))
        for day, fetched, key, usage in rows:
            con.execute("insert into raw.keys values (?, 'old-run', ?, 'f.json', '{}', null, 0, ?, ?, null)",
                        [day, fetched, key, json.dumps({"hash": key, "usage": usage})])
        window = sorted(con.execute(WINDOW_PICK).fetchall())
        assert migrate(con) == [17]
        build_staging(con)
        flagged = sorted(con.execute("select partition_date, key_hash, fetched_at, payload ->> 'usage' "
                                     "from raw.keys where is_latest_fetch").fetchall())
        assert flagged == window
        # Per day: KEY_A's latest fetch, KEY_B's only one, and of KEY_C's two equal times the one stored first.
        assert sorted((day, key, float(usage)) for day, key, _, usage in flagged) == sorted(
            (DAY + timedelta(days=n), key, usage + n) for n in range(3)
            for key, usage in ((KEY_A, 2.0), (KEY_B, 5.0), (KEY_C, 9.0)))
        assert con.execute("select count(*) from raw.keys where is_latest_fetch is null").fetchone()[0] == 0
        assert sorted(con.execute("select snapshot_date, api_key_hash, fetched_at, cast(usage_usd as varchar) "
                                  "from staging.stg_key_snapshots").fetchall()) == window
