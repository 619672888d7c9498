"""What the CLI end-to-end suites share: running `openrouter-spend run` and fingerprinting its warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "openrouter_spend.cli"]
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=offset) for offset in (3, 2, 1)]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENROUTER_", "AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    # Replay clock: a rerun of a day must give the same warehouse, so its snapshots must describe the same moment
    # (on the wall clock "now" has moved on; test_realapi_backfill.py drops the variable: the wall clock).
    env.update({"OPENROUTER_SPEND_HOME": str(home), "OPENROUTER_EMULATOR_ANCHOR_DATE": TODAY.isoformat(),
                "OPENROUTER_SPEND_TASK_RETRIES": "0", "OPENROUTER_EMULATOR_CLOCK": "replay", **extra})
    return env


# What the scheduler does with the metadata database `make airflow` shares: the dag-processor has parsed
# the DAG (`airflow dags reserialize`), the user unpaused it, and each scheduler loop creates the run that
# is due (SchedulerJobRunner._create_dag_runs, the scheduler's own code) until none is due yet.
SCHEDULER_LOOPS = r"""
import json
from datetime import UTC, datetime

from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from sqlalchemy import select

with create_session() as session:
    dag_model = session.get(DagModel, "openrouter_spend_daily")
    dag_model.is_paused = False
    scheduler = SchedulerJobRunner(job=Job())
    loops = 0
    while dag_model.next_dagrun_create_after <= datetime.now(UTC) and loops < 10:
        scheduler._create_dag_runs([dag_model], session)
        session.flush()
        loops += 1
    runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_model.dag_id)).all()
    print(json.dumps({
        "loops": loops,
        "runs": [{"logical_date": run.logical_date.isoformat(), "run_type": getattr(run.run_type, "value", run.run_type),
                  "interval": [run.data_interval_start.isoformat(), run.data_interval_end.isoformat()],
                  "started": run.start_date.isoformat(), "ended": run.end_date.isoformat()}
                 for run in runs],
        "next_dagrun": dag_model.next_dagrun.isoformat(),
        "next_dagrun_create_after": dag_model.next_dagrun_create_after.isoformat(),
    }))
"""


def airflow_env(env: dict[str, str]) -> dict[str, str]:
    """The environment `make airflow` gives Airflow for env's home (scripts/airflow-standalone.sh)."""
    exports = subprocess.run(CLI[:1] + ["-m", "openrouter_spend.runner"], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    env = dict(env)
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI; the timeout only stops a hung run (a shared 2-core machine can take minutes a day)."""
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
