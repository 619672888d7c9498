"""One command at a time per home: a second one is refused (or waits), and a killed holder never leaves it stuck."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import base_env, run_cli

from openrouter_spend.runner import HomeBusy, home_lock

HOLD = """
import sys, time
from pathlib import Path
from openrouter_spend.runner import home_lock
with home_lock(Path(sys.argv[1]), "run"):
    Path(sys.argv[2]).touch()
    time.sleep(600)
"""


def _holder(home: Path, tmp_path: Path) -> subprocess.Popen:
    """A process that takes the home's lock and keeps it until killed."""
    ready = tmp_path / "holding"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(home), str(ready)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return process


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_a_second_command_is_refused_with_the_holders_name(tmp_path):
    home = tmp_path / "home"
    holder = _holder(home, tmp_path)
    try:
        with pytest.raises(HomeBusy) as refused, home_lock(home, "rebuild"):
            pass
        assert f"openrouter-spend run (pid {holder.pid} on " in str(refused.value)
        assert "--wait" in str(refused.value) and str(home) in str(refused.value)
    finally:
        _kill(holder)


def test_a_killed_holder_leaves_no_stuck_lock_and_the_next_command_takes_it_over(tmp_path, caplog):
    home = tmp_path / "home"
    holder = _holder(home, tmp_path)
    _kill(holder)  # kill -9: no cleanup ran, the lock file still names the dead holder
    assert json.loads((home / ".lock").read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="openrouter_spend.runner"), home_lock(home, "run") as me:
        assert me["pid"] == os.getpid()
        assert json.loads((home / ".lock").read_text())["pid"] == os.getpid()
    assert f"took over the lock of openrouter-spend run (pid {holder.pid} " in caplog.text
    assert (home / ".lock").read_text() == ""  # released cleanly: the next holder takes over nothing


def test_wait_queues_behind_the_holder(tmp_path):
    home = tmp_path / "home"
    holder = _holder(home, tmp_path)
    acquired = threading.Event()

    def second() -> None:
        with home_lock(home, "run", wait=True):
            acquired.set()

    waiter = threading.Thread(target=second, daemon=True)
    waiter.start()
    assert not acquired.wait(1.0)  # still held
    _kill(holder)
    assert acquired.wait(30)
    waiter.join(30)


def test_the_cli_refuses_a_run_on_a_busy_home_before_starting_anything(tmp_path):
    home = tmp_path / "home"
    holder = _holder(home, tmp_path)
    try:
        for args in (["run", "--days", "1"], ["rebuild"], ["migrate"]):
            result = run_cli(args, base_env(home), timeout=120)
            assert result.returncode == 3, result.stdout + result.stderr
            assert f"is in use by openrouter-spend run (pid {holder.pid} " in result.stderr
        assert sorted(path.name for path in home.iterdir()) == [".lock"]  # no Airflow home, no warehouse
    finally:
        _kill(holder)
