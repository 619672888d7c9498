"""`openrouter-spend run` in Airflow's own history: a signal stops it cleanly (test_realapi_backfill.py shows the
scheduler taking over the days a CLI run made)."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta

import pytest
from cli_fixtures import CLI, ROOT, TODAY, cli_env

from openrouter_spend.runner import home_lock

pytestmark = pytest.mark.slow


def test_sigterm_stops_a_run_after_its_current_task_and_releases_the_home(tmp_path, caplog):
    home = tmp_path / "home"
    first, second = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
    run = subprocess.Popen(CLI + ["run", "--start", first.isoformat(), "--end", second.isoformat(),
                                  "--scenario", "quiet"], env=cli_env(home), cwd=ROOT, text=True,
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
