"""kill -9 at extraction, in the middle of the load's transaction and after the gate, each followed by a rerun of
the day: the warehouse equals a clean run's, and each killed run's lock is taken over instead of blocking the
rerun.

The kills are chained on one home, in the DAG's order: the rerun after each kill is the run killed at the next
stage, and the rerun after the last one completes. Every kill is still followed by a rerun that takes over its
lock and goes through the stage it broke: four runs of the day instead of six."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from harness import CLI, ROOT, data_fingerprint, hostile_env, hostile_run_args, prepare_home, run_cli

pytestmark = pytest.mark.slow

PAUSES = {  # in the order the DAG reaches them
    "extract": ("OPENROUTER_SPEND_TEST_PAUSE_AT", "extract:{marker}"),  # snapshots landed, batch not committed
    "load": ("OPENROUTER_SPEND_TEST_PAUSE_MID_LOAD", "{marker}"),  # raw partition deleted, insert not done
    "gate": ("OPENROUTER_SPEND_TEST_PAUSE_AT", "gate:{marker}"),  # results recorded, nothing published yet
}


@pytest.fixture(scope="module")
def clean(hostile_run):
    """The clean run's warehouse, for comparison."""
    assert hostile_run.result.returncode == 0, hostile_run.result.stdout + hostile_run.result.stderr
    return data_fingerprint(hostile_run.home / "warehouse.duckdb")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One home through a run killed at each stage in turn, then a run to the end.

    → (home, {stage: (killed pid, the lock's pid after the kill, what the next run wrote to stderr)}, last run)
    """
    folder = tmp_path_factory.mktemp("crash-chain")
    home = prepare_home(folder / "home")
    env = hostile_env(home)
    killed: dict[str, tuple[int, int, str]] = {}
    pending: tuple[str, int] | None = None  # the stage and pid of the last killed run, until the next run speaks
    for stage, (variable, value) in PAUSES.items():
        marker, stderr = folder / f"paused-{stage}", folder / f"{stage}.stderr"
        with open(stderr, "w") as err:
            process = subprocess.Popen(CLI + hostile_run_args(), cwd=ROOT, start_new_session=True,
                                       env=env | {variable: value.format(marker=marker)},
                                       stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert process.poll() is None, f"the run ended before reaching the {stage} pause:\n" \
                    + stderr.read_text()[-3000:]
                assert time.monotonic() < deadline, f"the run never reached the {stage} pause"
                time.sleep(0.2)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if pending:
            killed[pending[0]] += (stderr.read_text(),)
        killed[stage] = (process.pid, json.loads((home / ".lock").read_text())["pid"])
        pending = (stage, process.pid)
    rerun = run_cli(hostile_run_args(), env)
    killed[pending[0]] += (rerun.stderr,)
    return home, killed, rerun


@pytest.mark.parametrize("stage", list(PAUSES))
def test_kill_9_then_rerun_gives_the_clean_runs_warehouse(stage, chain, clean):
    home, killed, rerun = chain
    pid, holder, next_stderr = killed[stage]
    assert holder == pid  # left behind by the killed run
    assert f"took over the lock of openrouter-spend run (pid {pid} " in next_stderr

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert data_fingerprint(home / "warehouse.duckdb") == clean
    assert data_fingerprint(home / "published" / "warehouse.duckdb") == clean
