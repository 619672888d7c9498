"""`openrouter-spend run` end to end: Airflow runs the DAG per day against the emulator over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from openrouter_emulator import EmulatorServer, FaultRule, build_org

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "openrouter_spend.cli"]
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=offset) for offset in (3, 2, 1)]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENROUTER_", "AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    # Replay clock: a rerun of a day must give the same warehouse, so its snapshots must describe the same moment
    # (on the wall clock "now" has moved on; test_realapi_backfill.py runs the CLI on the wall clock).
    env.update({"OPENROUTER_SPEND_HOME": str(home), "OPENROUTER_EMULATOR_ANCHOR_DATE": TODAY.isoformat(),
                "OPENROUTER_SPEND_TASK_RETRIES": "0", "OPENROUTER_EMULATOR_CLOCK": "replay", **extra})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# Logs with one row per run (a rerun adds a row by design), not data.
RUN_LOGS = ("build_log", "fct_quality_runs", "fct_quality_results", "fct_alert_runs")


def table_fingerprint(warehouse: Path) -> dict[str, tuple]:
    """Row count and a content checksum of every raw, staging, config and mart relation."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = con.execute("select table_schema || '.' || table_name from information_schema.tables "
                            "where table_schema in ('raw', 'staging', 'config', 'marts')"
                            f" and table_name not in {RUN_LOGS} order by 1").fetchall()
        fingerprint = {}
        for (name,) in names:
            columns = [c for (c,) in con.execute(
                f"select column_name from information_schema.columns where table_schema || '.' || table_name = '{name}'"
                " and column_name not in ('run_id', 'fetched_at', 'landing_file', 'snapshot_fetched_at',"
                " 'loaded_at', 'recorded_at', 'evaluated_at', 'validated_at',"
                # alert text cites the quality run it relied on, by run id
                " 'message')").fetchall()]
            fingerprint[name] = con.execute(
                f"select count(*), sum(hash({', '.join(columns)})) from {name}").fetchone()
        return fingerprint


@pytest.fixture(scope="module")
def three_days(tmp_path_factory):
    """One CLI run over three days with the embedded emulator (no key configured)."""
    home = tmp_path_factory.mktemp("e2e") / "home"
    started = time.monotonic()
    result = run_cli(["run", "--start", DAYS[0].isoformat(), "--end", DAYS[-1].isoformat()], cli_env(home))
    return home, result, time.monotonic() - started


def test_run_succeeds_and_reports_every_day(three_days):
    home, result, _ = three_days
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bundled emulator" in result.stdout
    for day in DAYS:
        assert f"{day}  ok" in result.stdout
    assert "Spend per day (USD)" in result.stdout and str(home / "warehouse.duckdb") in result.stdout


def test_warehouse_holds_exactly_the_emulated_spend(three_days):
    home, result, _ = three_days
    assert result.returncode == 0, result.stderr
    org = build_org("default", seed=42, anchor_date=TODAY)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        for day in DAYS:
            expected = org.daily_spend(day)
            per_key = con.execute("select sum(usage_usd) from staging.stg_activity where usage_date = ?",
                                  [day]).fetchone()[0]
            account = con.execute("select sum(usage_usd) from staging.stg_account_activity where usage_date = ?",
                                  [day]).fetchone()[0]
            assert per_key == pytest.approx(expected, abs=1e-6)
            assert account == pytest.approx(expected, abs=1e-6)
        assert con.execute("select count(*) from meta.extraction_gaps").fetchone()[0] == 0
        listed = con.execute("select count(*) from staging.stg_keys").fetchone()[0]
        assert listed >= 120
        assert con.execute("select count(*) from staging.stg_keys where is_disabled").fetchone()[0] > 0
        assert con.execute("select count(distinct snapshot_date) from staging.stg_credits").fetchone()[0] == 3
        mart_spend = con.execute("select sum(spend_usd) from marts.fct_daily_spend where usage_date between ? and ?",
                                 [DAYS[0], DAYS[-1]]).fetchone()[0]
        assert mart_spend == pytest.approx(sum(org.daily_spend(day) for day in DAYS), abs=1e-6)


def test_analysts_get_a_published_copy_that_meets_the_contract(three_days):
    home, result, _ = three_days
    assert result.returncode == 0, result.stderr
    published = home / "published" / "warehouse.duckdb"
    checker = ROOT.parent / "shared" / "tools" / "check_contract.py"
    if not checker.exists():
        pytest.skip(f"contract checker not found at {checker}")
    check = subprocess.run([sys.executable, str(checker), str(published)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    with duckdb.connect(str(published), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_credit_balance").fetchone()[0] == 3


def test_management_key_is_nowhere_in_outputs(three_days):
    home, result, _ = three_days
    from openrouter_emulator import EmulatorServer as Server

    secret = Server.DEFAULT_MANAGEMENT_KEY if hasattr(Server, "DEFAULT_MANAGEMENT_KEY") else \
        "sk-or-v1-emulator-management-0000000000000000"
    assert secret not in result.stdout + result.stderr
    import gzip
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            assert secret.encode() not in data, path


def test_rerunning_a_day_changes_nothing(three_days):
    home, result, _ = three_days
    assert result.returncode == 0, result.stderr
    before = table_fingerprint(home / "warehouse.duckdb")
    again = run_cli(["run", "--start", DAYS[1].isoformat()], cli_env(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert table_fingerprint(home / "warehouse.duckdb") == before


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


@pytest.fixture(scope="module")
def one_day(module_emulator, tmp_path_factory) -> Path:
    """A home after one clean run of the last day against the external emulator (read-only: copy it)."""
    home = tmp_path_factory.mktemp("one-day") / "home"
    module_emulator.clear_faults()
    first = run_cli(["run", "--start", DAYS[-1].isoformat()], env_for(module_emulator, home))
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


def test_unknown_fields_and_datetime_dates_load_cleanly(external_emulator, tmp_path):
    home = tmp_path / "home"
    external_emulator.set_faults([FaultRule("extra_fields"), FaultRule("activity_datetime_dates")])
    result = run_cli(["run", "--start", DAYS[-1].isoformat()], env_for(external_emulator, home))
    assert result.returncode == 0, result.stdout + result.stderr
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from staging.stg_activity where usage_date = ?",
                           [DAYS[-1]]).fetchone()[0] > 0


def test_a_load_killed_midway_leaves_no_partial_day_and_the_rerun_completes(external_emulator, one_day, tmp_path):
    home = copy_of(one_day, tmp_path / "home")
    day = DAYS[-1].isoformat()
    before = table_fingerprint(home / "warehouse.duckdb")

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
