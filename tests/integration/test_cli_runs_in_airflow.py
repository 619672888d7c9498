"""`openrouter-spend run` in Airflow's own history: the scheduler sees its days, and a signal stops it cleanly."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openrouter_spend.runner import home_lock

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "openrouter_spend.cli"]
TODAY = datetime.now(UTC).date()

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


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENROUTER_", "AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_HOME"))}
    env.update({"OPENROUTER_SPEND_HOME": str(home), "OPENROUTER_EMULATOR_ANCHOR_DATE": TODAY.isoformat(),
                "OPENROUTER_SPEND_TASK_RETRIES": "0", "OPENROUTER_EMULATOR_CLOCK": "replay"})
    return env


def _airflow_env(home: Path) -> dict[str, str]:
    """The environment `make airflow` gives Airflow for this home (scripts/airflow-standalone.sh)."""
    exports = subprocess.run([sys.executable, "-m", "openrouter_spend.runner"], env=_env(home), cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    env = _env(home)
    for line in exports.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return env


def _midnight(day) -> str:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC).isoformat()


def test_the_scheduler_neither_repeats_nor_skips_the_days_a_cli_run_made(tmp_path):
    home = tmp_path / "home"
    days = [TODAY - timedelta(days=offset) for offset in (3, 2, 1)]
    invoked = datetime.now(UTC)
    ran = subprocess.run(CLI + ["run", "--days", "3", "--scenario", "quiet"], env=_env(home), cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    airflow = _airflow_env(home)
    parsed = subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=airflow, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert parsed.returncode == 0, parsed.stderr[-2000:]
    scheduled = subprocess.run([sys.executable, "-c", SCHEDULER_LOOPS], env=airflow, cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert scheduled.returncode == 0, scheduled.stderr[-3000:]
    view = json.loads(scheduled.stdout.strip().splitlines()[-1])

    # One run per day, all made by the CLI, each under the scheduler's identity for its day.
    assert sorted((run["logical_date"], run["run_type"]) for run in view["runs"]) == [
        (_midnight(day), "manual") for day in days]
    for run in view["runs"]:
        start = datetime.fromisoformat(run["logical_date"])
        assert run["interval"] == [start.isoformat(), (start + timedelta(days=1)).isoformat()]
        # The UI's run duration is end − start: the wall-clock start, not the logical date of a past day.
        assert invoked <= datetime.fromisoformat(run["started"]) <= datetime.fromisoformat(run["ended"])
    # The scheduler took yesterday as done (no second run) and moves on to today, due when it ends.
    assert view["loops"] == 1
    assert view["next_dagrun"] == _midnight(TODAY)
    assert view["next_dagrun_create_after"] == _midnight(TODAY + timedelta(days=1))


def test_sigterm_stops_a_run_after_its_current_task_and_releases_the_home(tmp_path, caplog):
    home = tmp_path / "home"
    first, second = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
    run = subprocess.Popen(CLI + ["run", "--start", first.isoformat(), "--end", second.isoformat(),
                                  "--scenario", "quiet"], env=_env(home), cwd=ROOT, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        # The first day has started once its first HTTP task lands something.
        started = home / "landing" / "openrouter" / f"date={first}"
        deadline = time.monotonic() + 600
        while not started.exists():
            assert run.poll() is None, "the run ended before its first day started"
            assert time.monotonic() < deadline, "the first day never started"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)

    assert run.returncode == 128 + signal.SIGTERM, out + err
    assert f"stopped by SIGTERM after the current task of {first}" in err, err
    assert "1 later day(s) not run" in err and "is released" in err, err
    # The second day never started, and the interrupted day's run is recorded as failed, not running.
    assert not (home / "landing" / "openrouter" / f"date={second}").exists()
    with sqlite3.connect(home / "airflow" / "airflow.db") as db:
        assert db.execute("select state from dag_run").fetchall() == [("failed",)]
    # Released in order (the holder's name cleared), not dropped by the kernel at exit: no takeover.
    assert (home / ".lock").read_text() == ""
    with caplog.at_level(logging.WARNING, logger="openrouter_spend.runner"), home_lock(home, "check"):
        pass
    assert "took over" not in caplog.text
