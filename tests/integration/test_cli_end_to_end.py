"""`openrouter-spend run` end to end: Airflow runs the DAG per day against the embedded emulator over HTTP
(three days, then a rerun of one); test_cli_faults_end_to_end.py breaks runs against an external emulator."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest
from cli_fixtures import DAYS, ROOT, TODAY, cli_env, run_cli, table_fingerprint

from openrouter_emulator import build_org

pytestmark = pytest.mark.slow


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
