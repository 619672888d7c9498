"""kill -9 at extraction, in the middle of the load's transaction and after the gate, then a rerun of the day:
the warehouse equals a clean run's, and the killed run's lock is taken over instead of blocking the rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from harness import CLI, ROOT, data_fingerprint, hostile_env, hostile_run_args, prepare_home, run_cli

pytestmark = pytest.mark.slow

PAUSES = {
    "extract": ("OPENROUTER_SPEND_TEST_PAUSE_AT", "extract:{marker}"),  # snapshots landed, batch not committed
    "load": ("OPENROUTER_SPEND_TEST_PAUSE_MID_LOAD", "{marker}"),  # raw partition deleted, insert not done
    "gate": ("OPENROUTER_SPEND_TEST_PAUSE_AT", "gate:{marker}"),  # results recorded, nothing published yet
}


@pytest.fixture(scope="module")
def clean(hostile_run):
    """The clean run's warehouse, for comparison."""
    assert hostile_run.result.returncode == 0, hostile_run.result.stdout + hostile_run.result.stderr
    return data_fingerprint(hostile_run.home / "warehouse.duckdb")


@pytest.mark.parametrize("stage", list(PAUSES))
def test_kill_9_then_rerun_gives_the_clean_runs_warehouse(stage, clean, tmp_path):
    home = prepare_home(tmp_path / "home")
    marker = tmp_path / "paused"
    variable, value = PAUSES[stage]
    env = hostile_env(home)
    process = subprocess.Popen(CLI + hostile_run_args(), cwd=ROOT, start_new_session=True,
                               env=env | {variable: value.format(marker=marker)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, f"the run ended before reaching the {stage} pause"
            assert time.monotonic() < deadline, f"the run never reached the {stage} pause"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert json.loads((home / ".lock").read_text())["pid"] == process.pid  # left behind by the killed run

    rerun = run_cli(hostile_run_args(), env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"took over the lock of openrouter-spend run (pid {process.pid} " in rerun.stderr
    assert data_fingerprint(home / "warehouse.duckdb") == clean
    assert data_fingerprint(home / "published" / "warehouse.duckdb") == clean
