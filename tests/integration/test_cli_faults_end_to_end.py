"""`openrouter-spend run` against an external emulator that breaks: bad responses, a wrong key, unknown fields,
a load killed midway, a day outside the API window. Apart from test_cli_end_to_end.py, so the two run in
parallel test processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from cli_fixtures import CLI, DAYS, ROOT, TODAY, cli_env, run_cli, table_fingerprint

from openrouter_emulator import EmulatorServer, FaultRule

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def module_emulator():
    # Replay clock at 00:05 today: a rerun fetches the same snapshots, so the warehouse must come out identical.
    with EmulatorServer(scenario="default", anchor_date=TODAY, clock="replay") as server:
        yield server


@pytest.fixture
def external_emulator(module_emulator):
    """The module's emulator with no faults, and none left behind for the next test."""
    module_emulator.clear_faults()
    yield module_emulator
    module_emulator.clear_faults()


def env_for(server: EmulatorServer, home: Path, key: str | None = None) -> dict[str, str]:
    return cli_env(home, OPENROUTER_BASE_URL=server.base_url,
                   OPENROUTER_MANAGEMENT_KEY=key or server.management_key)


# A newer API version's responses: unknown fields in every item, datetimes for /activity's dates. The first run
# of the day gets them, so it is both the unknown-fields test and the home the other tests break or rerun.
NEWER_API = [FaultRule("extra_fields"), FaultRule("activity_datetime_dates")]


@pytest.fixture(scope="module")
def first_run(module_emulator, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The first run of the last day on a fresh home against the external emulator answering as NEWER_API."""
    home = tmp_path_factory.mktemp("one-day") / "home"
    module_emulator.set_faults(NEWER_API)
    try:
        return home, run_cli(["run", "--start", DAYS[-1].isoformat()], env_for(module_emulator, home))
    finally:
        module_emulator.clear_faults()


@pytest.fixture(scope="module")
def one_day(first_run) -> Path:
    """A home after one completed run of the last day (read-only: copy it)."""
    home, first = first_run
    assert first.returncode == 0, first.stdout + first.stderr
    return home


def copy_of(home: Path, target: Path) -> Path:
    """The whole home (warehouse, landing, Airflow's state, lock file) as the run left it."""
    shutil.copytree(home, target, symlinks=True)
    return target


def test_bad_responses_fail_the_run_name_the_task_and_lose_nothing(external_emulator, one_day, tmp_path):
    home = copy_of(one_day, tmp_path / "home")
    day = DAYS[-1].isoformat()
    before = table_fingerprint(home / "warehouse.duckdb")

    external_emulator.set_faults([FaultRule("malformed_json", path_prefix="/keys")])
    broken = run_cli(["run", "--start", day], env_for(external_emulator, home))
    assert broken.returncode == 1
    assert "failed task extract_snapshots" in broken.stdout
    assert "not valid JSON" in broken.stdout
    assert table_fingerprint(home / "warehouse.duckdb") == before

    external_emulator.clear_faults()
    wrong_key = run_cli(["run", "--start", day], env_for(external_emulator, home, key="sk-or-v1-wrong"))
    assert wrong_key.returncode == 1
    assert "failed task check_activity_window" in wrong_key.stdout and "401" in wrong_key.stdout
    assert "sk-or-v1-wrong" not in wrong_key.stdout + wrong_key.stderr
    assert table_fingerprint(home / "warehouse.duckdb") == before


def test_unknown_fields_and_datetime_dates_load_cleanly(first_run):
    home, result = first_run
    assert result.returncode == 0, result.stdout + result.stderr
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from staging.stg_activity where usage_date = ?",
                           [DAYS[-1]]).fetchone()[0] > 0


def test_a_load_killed_midway_leaves_no_partial_day_and_the_rerun_completes(external_emulator, one_day, tmp_path):
    home = copy_of(one_day, tmp_path / "home")
    day = DAYS[-1].isoformat()
    before = table_fingerprint(home / "warehouse.duckdb")

    # The responses the day was loaded from (raw keeps the unknown fields), so the rerun must give it back.
    external_emulator.set_faults(NEWER_API)
    marker = tmp_path / "load-paused"
    process = subprocess.Popen(CLI + ["run", "--start", day], cwd=ROOT, start_new_session=True,
                               env=env_for(external_emulator, home) | {"OPENROUTER_SPEND_TEST_PAUSE_MID_LOAD": str(marker)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, "the run ended before reaching the load"
            assert time.monotonic() < deadline, "the load never started"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    assert table_fingerprint(home / "warehouse.duckdb") == before
    rerun = run_cli(["run", "--start", day], env_for(external_emulator, home))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert table_fingerprint(home / "warehouse.duckdb") == before


def test_a_day_outside_the_window_is_recorded_as_a_gap(external_emulator, tmp_path):
    home = tmp_path / "home"
    old_day = (TODAY - timedelta(days=40)).isoformat()
    result = run_cli(["run", "--start", old_day], env_for(external_emulator, home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Permanent gaps" in result.stdout and old_day in result.stdout
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from raw.activity").fetchone()[0] == 0
        assert con.execute("select endpoint from meta.extraction_gaps").fetchall() == [("/activity",)]
