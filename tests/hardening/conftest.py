"""Fault-injection fixtures: one run of the hostile world, shared by the suite (helpers in harness.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The hardening helpers (harness, hostile, inert) and the mart fixtures of the unit tests.
sys.path[:0] = [str(HERE), str(HERE.parent / "unit")]

from harness import (  # noqa: E402
    CLI,
    ROOT,
    SLACK_ROUTES,
    HostileRun,
    Inbox,
    SlackStandIn,
    free_port,
    hostile_env,
    hostile_run_args,
    prepare_home,
    run_cli,
)


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> HostileRun:
    """The hostile world for one day, with a second run started on the same home while the first holds it."""
    from aiosmtpd.controller import Controller

    home = prepare_home(tmp_path_factory.mktemp("hostile-run") / "home")
    slack, inbox = SlackStandIn(), Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        env = hostile_env(home, OPENROUTER_SPEND_SMTP_HOST="127.0.0.1",
                          OPENROUTER_SPEND_SMTP_PORT=str(port), OPENROUTER_SPEND_SMTP_STARTTLS="false",
                          OPENROUTER_SPEND_DIGEST_EMAIL_TO="finance@hostile.example",
                          **{variable: slack.webhook(route) for route, variable in SLACK_ROUTES.items()})
        first = subprocess.Popen(CLI + hostile_run_args(), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        lock = home / ".lock"
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the home's lock"
            time.sleep(0.1)
        holder = json.loads(lock.read_text())
        concurrent = run_cli(hostile_run_args(), env, timeout=120)
        stdout, stderr = first.communicate(timeout=900)
        result = subprocess.CompletedProcess(first.args, first.returncode, stdout, stderr)
        yield HostileRun(home, result, concurrent, holder["pid"], slack, inbox)
    finally:
        controller.stop()
        slack.close()
