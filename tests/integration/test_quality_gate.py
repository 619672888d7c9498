"""The data-quality gate on real warehouses built by `openrouter-spend run` against the emulator.

The worlds are the ones the other end-to-end suites read (tests/conftest.py: the default and quiet scenarios
over the 14 days before the pinned anchor, built once and cached); each test corrupts its own copy the way
real data goes wrong, then runs what the DAG runs (validate, and only then publish) and checks that the gate catches the
corruption, names it, records it, and that the published copy is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from openrouter_spend import quality
from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.quality import QualityGateFailed
from openrouter_spend.warehouse import connect, marts
from openrouter_spend.warehouse.publish import publish_warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ANCHOR = date(2026, 11, 26)  # the emulated worlds' pinned anchor (tests/conftest.py)
FIRST, MIDDLE, LAST = (ANCHOR - timedelta(days=offset) for offset in (3, 2, 1))
WORLD_DAYS = [ANCHOR - timedelta(days=offset) for offset in range(14, 0, -1)]  # 2026-11-12 .. 2026-11-25
EMULATED_WORLDS = {"quiet": WORLD_DAYS}  # the alert tests' quiet world


@pytest.fixture(scope="session")
def default_home(emulated_warehouse) -> Path:
    """The daily DAG run through the CLI for the 14 days before the anchor against the embedded emulator (replay
    clock: each day's snapshots are on time, so the corrupted /credits and /keys have something to fail); FIRST,
    MIDDLE and LAST are its last three days, so each has a week of history before it."""
    assert emulated_warehouse.days == tuple(WORLD_DAYS)
    return emulated_warehouse.home


@pytest.fixture(scope="session")
def quiet_home(emulated_worlds) -> Path:
    return emulated_worlds(EMULATED_WORLDS, ANCHOR)["quiet"].home


def use_copy(source: Path, target: Path, monkeypatch) -> Path:
    """A private copy of a built home (warehouse and published copy) as OPENROUTER_SPEND_HOME."""
    target.mkdir(parents=True)
    shutil.copyfile(source / "warehouse.duckdb", target / "warehouse.duckdb")
    shutil.copytree(source / "published", target / "published")
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(target))
    monkeypatch.delenv("OPENROUTER_SPEND_CONFIG_DIR", raising=False)
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "False")
    return target


@pytest.fixture
def home(default_home, tmp_path, monkeypatch) -> Path:
    return use_copy(default_home, tmp_path / "home", monkeypatch)


def gate_then_publish(day: date, run_id: str) -> Path:
    """What the DAG does after build_marts: validate_warehouse, then publish_warehouse downstream of it."""
    quality.validate_day(day, run_id)
    return publish_warehouse()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(sql: str, params: list | None = None) -> list[tuple]:
    with connect(read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def corrupt(statements: list[tuple[str, list]], rebuild_day: date | None = None, *, full: bool = False) -> None:
    """Change raw data, then rebuild the marts the way the DAG would before validating."""
    with connect() as con:
        for sql, params in statements:
            con.execute(sql, params)
        if full:
            marts.rebuild_all(con)
        else:
            marts.build_marts(con, [rebuild_day])


def gate_fails(home: Path, day: date, run_id: str) -> tuple[QualityGateFailed, set[str]]:
    """Run the gate expecting failure; the published copy must be untouched and the failure recorded."""
    published = home / "published" / "warehouse.duckdb"
    before = digest(published)
    with pytest.raises(QualityGateFailed) as caught:
        gate_then_publish(day, run_id)
    assert digest(published) == before, "the published copy changed although the gate failed"
    status, failed_count, expectations, summary = rows(
        "select status, failed_count, expectation_count, summary from marts.fct_quality_runs "
        "where run_id = ? and usage_date = ?", [run_id, day])[0]
    failed = {row[0] for row in rows("select check_id from marts.fct_quality_results where run_id = ? and "
                                     "usage_date = ? and not success and severity = 'error'", [run_id, day])}
    assert status == "failed" and failed_count == len(failed) == len(caught.value.failed) > 0
    assert rows("select count(*) from marts.fct_quality_results where run_id = ?", [run_id])[0][0] == expectations
    assert summary == caught.value.summary and str(caught.value) == summary
    for check_id in failed:
        assert check_id in summary
    return caught.value, failed


def test_clean_default_scenario_passes_every_expectation_then_publishes(home):
    for day in (FIRST, LAST):
        outcome = quality.validate_day(day, f"clean-{day}")
        assert (outcome["status"], outcome["failed"], outcome["warnings"]) == ("passed", 0, 0), outcome
        assert outcome["expectations"] > 250
        stored = rows("select count(*), count(*) filter (where success) from marts.fct_quality_results "
                      "where run_id = ? and usage_date = ?", [f"clean-{day}", day])[0]
        assert stored == (outcome["expectations"], outcome["expectations"])
        suites = {s for (s,) in rows("select distinct suite from marts.fct_quality_results where run_id = ?",
                                     [f"clean-{day}"])}
        assert suites == {"freshness", "schema", "raw", "staging", "marts", "reconciliation"}
        results = json.loads(Path(outcome["results_file"]).read_text())
        assert results["run"]["status"] == "passed" and len(results["results"]) == outcome["expectations"]
    reconciled = {check_id for (check_id,) in rows(
        "select check_id from marts.fct_quality_results where run_id = ? and element_count > 0 "
        "and suite = 'reconciliation'", [f"clean-{LAST}"])}
    assert "reconcile.credits_vs_activity:usage_delta_matches_activity" in reconciled  # compared, not skipped
    assert "reconcile.key_usage_vs_activity:usage_delta_matches_activity" in reconciled
    index = Path(outcome["data_docs"])
    assert index == home / "quality" / "docs" / "index.html"
    # One page per usage day (its newest run), every check of the day in one batch, listed by day in the index;
    # validating a later day keeps the earlier day's page.
    listing = index.read_text()
    for day in (FIRST, LAST):
        [page] = (index.parent / "validations" / "quality" / "gate").glob(f"{day}/*/*.html")
        assert f'id="day-{day}"' in listing
        assert f'href="{page.relative_to(index.parent).as_posix()}"' in listing
    # Readable offline: nothing under the docs folder loads a stylesheet, script or image from another host
    # (a plain link to a web page may stay).
    for html in index.parent.rglob("*.html"):
        assert not re.search(r'src="https?://|<link\b[^>]*href="https?://', html.read_text()), html
    published = gate_then_publish(LAST, "clean-publish")
    with connect(published, read_only=True) as con:
        assert con.execute("select status from marts.fct_quality_runs where run_id = 'clean-publish'").fetchall() == \
            [("passed",)]


def test_clean_quiet_scenario_passes_every_expectation(quiet_home, tmp_path, monkeypatch):
    use_copy(quiet_home, tmp_path / "home", monkeypatch)
    outcome = quality.validate_day(LAST, "quiet")
    assert (outcome["status"], outcome["failed"], outcome["warnings"]) == ("passed", 0, 0), outcome


def test_negative_usage_is_caught_in_every_layer(home):
    corrupt([("""
        update raw.activity set payload = json_merge_patch(payload, '{"usage": -5.0}')
        where rowid = (
            select rowid from raw.activity
            where partition_date = $1 and scope = 'key'
            qualify count(*) over (partition by api_key_hash, payload ->> 'model_permaslug',
                                   payload ->> 'provider_name') = 1
            order by rowid limit 1)
        """, [LAST])], LAST)
    error, failed = gate_fails(home, LAST, "negative")
    assert {"raw.activity:usage:non_negative", "staging.stg_activity:usage_usd:non_negative",
            "marts.fct_daily_spend:spend_usd:non_negative"} <= failed
    assert "usage_usd (money) is never negative: 1 of" in error.summary and '"usage_usd": -5.0' in error.summary


def test_duplicated_rows_are_caught_at_the_raw_grain(home):
    corrupt([("insert into raw.activity select * from raw.activity where partition_date = ? and scope = 'key' "
              "order by rowid limit 5", [LAST])], LAST)
    error, failed = gate_fails(home, LAST, "duplicated")
    assert failed == {"raw.activity:grain_unique"}  # staging deduplicates, so nothing downstream is off
    assert "10 of" in error.summary and "scope × api_key_hash × model_permaslug × endpoint_id" in error.summary


def test_a_missing_day_is_caught_and_named(home):
    tables = ("credits", "workspaces", "keys", "models", "providers", "activity")
    corrupt([(f"delete from raw.{table} where partition_date = ?", [MIDDLE]) for table in tables]
            + [("delete from meta.landed_files where partition_date = ?", [MIDDLE]),
               ("delete from meta.load_runs where partition_date = ?", [MIDDLE])], full=True)
    error, failed = gate_fails(home, LAST, "missing-after")
    assert {"freshness.history:no_missing_days", "reconcile.credits_vs_activity:usage_delta_matches_activity"} <= failed
    assert f"were never loaded: {MIDDLE}" in error.summary
    assert f"never loaded in between: {MIDDLE}" in error.summary
    assert f"openrouter-spend run --start {MIDDLE} --end {MIDDLE}" in error.summary
    error, failed = gate_fails(home, MIDDLE, "missing-day")
    assert "freshness.endpoints:every_endpoint_landed" in failed
    assert "/credits" in error.summary and "/keys" in error.summary


def test_per_key_totals_that_do_not_add_up_are_caught(home):
    corrupt([("""
        update raw.activity
        set payload = json_merge_patch(payload, json_object('usage', cast(payload ->> 'usage' as double) + 10))
        where rowid = (select min(rowid) from raw.activity where partition_date = ? and scope = 'key')
        """, [LAST])], LAST)
    error, failed = gate_fails(home, LAST, "per-key")
    assert {"reconcile.key_vs_account:key_usage_within_account", "reconcile.marts_vs_account:spend_matches_account",
            "reconcile.key_usage_vs_activity:usage_delta_matches_activity"} <= failed
    assert "per-key activity exceeds the account's on 1 model × provider" in error.summary
    assert "(-10.0000 USD)" in error.summary  # that key's /keys delta is 10 USD short of its activity


def test_a_credits_jump_is_caught_with_the_difference(home):
    corrupt([("update raw.credits set total_usage = total_usage + 25 where partition_date = ?", [LAST])], LAST)
    error, failed = gate_fails(home, LAST, "credits")
    assert failed == {"reconcile.credits_vs_activity:usage_delta_matches_activity"}
    assert f"from {MIDDLE} to {LAST}" in error.summary and "difference +25.00 USD" in error.summary


def test_a_malformed_config_fails_the_gate_naming_file_and_field(home, tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "include" / "config", config)
    (config / "quality.yaml").write_text("row_counts:\n  min_ratio: lots\n")
    monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(config))
    error, failed = gate_fails(home, LAST, "bad-config")
    assert failed == {"config:quality.yaml:valid"}
    assert isinstance(error.__cause__, ConfigError)
    assert f"{config / 'quality.yaml'} line 2: row_counts.min_ratio: expected a number" in error.summary


def test_a_permanent_gap_day_passes_with_a_warning_and_shows_as_a_blind_spot(home):
    gap_day = WORLD_DAYS[0] - timedelta(days=1)  # never loaded, inside LAST's 30-day window
    with connect() as con:
        con.execute("insert into meta.extraction_gaps (partition_date, endpoint, reason, run_id) "
                    "values (?, '/activity', 'outside the 30-day window', 'test')", [gap_day])
        marts.rebuild_all(con)
    outcome = quality.validate_day(gap_day, "gap")
    assert (outcome["status"], outcome["failed"], outcome["warnings"]) == ("passed", 0, 1)
    assert rows("select check_id from marts.fct_quality_results where run_id = 'gap' and not success") == [
        ("freshness.endpoints:day_not_a_gap",)]
    assert quality.validate_day(LAST, "after-gap")["failed"] == 0
    assert rows("select gap_days_30d, gap_dates from marts.rpt_blind_spots_daily where usage_date = ? "
                "and project = '*'", [LAST]) == [(1, [gap_day])]
