"""`openrouter-spend run` end to end: Airflow runs the DAG per day against the embedded emulator over HTTP. The run
is the default emulated world's (tests/conftest.py: the 14 days before the pinned anchor, built once for every
suite that reads it), then a rerun of one of its days on a copy; test_cli_faults_end_to_end.py breaks runs
against an external emulator."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from cli_fixtures import ROOT, run_cli, table_fingerprint

from openrouter_emulator import build_org

pytestmark = pytest.mark.slow


def test_run_succeeds_and_reports_every_day(emulated_warehouse):
    # The world is only cached when its run exited 0 (tests/conftest.py fails the readers otherwise).
    output = emulated_warehouse.run_output
    assert "bundled emulator" in output
    for day in emulated_warehouse.days:
        assert f"{day}  ok" in output
    # The home the run was given (where the cache was when it ran) and the warehouse it reports inside it.
    home = Path(re.search(r"; home (\S+)$", output, re.MULTILINE).group(1))
    assert "Spend per day (USD)" in output and str(home / "warehouse.duckdb") in output


def test_warehouse_holds_exactly_the_emulated_spend(emulated_warehouse):
    days = emulated_warehouse.days
    org = build_org("default", seed=42, anchor_date=emulated_warehouse.anchor)
    with duckdb.connect(str(emulated_warehouse.warehouse), read_only=True) as con:
        for day in days:
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
        assert con.execute("select count(distinct snapshot_date) from staging.stg_credits").fetchone()[0] == len(days)
        mart_spend = con.execute("select sum(spend_usd) from marts.fct_daily_spend where usage_date between ? and ?",
                                 [days[0], days[-1]]).fetchone()[0]
        assert mart_spend == pytest.approx(sum(org.daily_spend(day) for day in days), abs=1e-6)


def test_analysts_get_a_published_copy_that_meets_the_contract(emulated_warehouse):
    published = emulated_warehouse.published
    checker = ROOT.parent / "shared" / "tools" / "check_contract.py"
    if not checker.exists():
        pytest.skip(f"contract checker not found at {checker}")
    check = subprocess.run([sys.executable, str(checker), str(published)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    with duckdb.connect(str(published), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_credit_balance").fetchone()[0] == len(emulated_warehouse.days)


def test_management_key_is_nowhere_in_outputs(emulated_warehouse):
    from openrouter_emulator import EmulatorServer as Server

    secret = Server.DEFAULT_MANAGEMENT_KEY if hasattr(Server, "DEFAULT_MANAGEMENT_KEY") else \
        "sk-or-v1-emulator-management-0000000000000000"
    assert secret not in emulated_warehouse.run_output
    for path in emulated_warehouse.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            assert secret.encode() not in data, path


def test_rerunning_a_day_changes_nothing(emulated_warehouse, tmp_path):
    # A day with a later day after it, rerun on a copy of the whole home (warehouse, landing, Airflow's state).
    home = shutil.copytree(emulated_warehouse.home, tmp_path / "home", symlinks=True)
    before = table_fingerprint(home / "warehouse.duckdb")
    again = run_cli(["run", "--start", emulated_warehouse.days[-2].isoformat()], emulated_warehouse.cli_env(home))
    assert again.returncode == 0, again.stdout + again.stderr
    assert table_fingerprint(home / "warehouse.duckdb") == before
