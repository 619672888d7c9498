"""Permanent errors fail the run at once: 401, 402 and 403 from the API and a day that has not ended are tried
once per task (attempts are counted, not seconds), the rules are not evaluated for a day that was not built,
and the data-engineering route is paged once per run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from harness import (
    DAY,
    ROOT,
    SLACK_ROUTES,
    TODAY,
    RecordingHttpServer,
    SlackStandIn,
    base_env,
    hostile_env,
    run_cli,
    world_config,
)

pytestmark = pytest.mark.slow

MESSAGES = {401: "No auth credentials found", 402: "Insufficient credits", 403: "Management key required"}


def _failures(home: Path) -> list[dict]:
    path = home / "airflow" / "task_failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _request_log(home: Path) -> None:
    """Plain app request-log lines for DAY, so the enrichment has /generation calls to make."""
    folder = home / "landing" / "requests" / "app"
    folder.mkdir(parents=True)
    (folder / f"{DAY}.jsonl").write_text("".join(
        json.dumps({"generation_id": f"gen-{i}", "created_at": f"{DAY}T1{i}:00:00Z", "project": "app"}) + "\n"
        for i in range(6)))


@pytest.mark.parametrize("status", [401, 402, 403])
def test_an_api_refusal_fails_each_task_once_and_pages_once(status, tmp_path):
    api = RecordingHttpServer(lambda method, path, body: (status, {"error": {"code": status,
                                                                             "message": MESSAGES[status]}}))
    slack = SlackStandIn()
    home = tmp_path / "home"
    _request_log(home)
    try:
        env = base_env(home, OPENROUTER_BASE_URL=f"{api.url}/api/v1", OPENROUTER_MANAGEMENT_KEY="sk-or-v1-refused",
                       OPENROUTER_SPEND_TASK_RETRIES="3", OPENROUTER_SPEND_TASK_RETRY_DELAY="30",
                       **{SLACK_ROUTES["data-eng"]: slack.webhook("data-eng")})
        result = run_cli(["run", "--start", DAY.isoformat()], env)
    finally:
        api.close()
        slack.close()
    assert result.returncode == 1
    assert f"HTTP {status}: {MESSAGES[status]}" in result.stdout
    assert "sk-or-v1-refused" not in result.stdout + result.stderr
    failures = _failures(home)
    assert sorted(f["task_id"] for f in failures) == ["check_activity_window", "enrich_generations"]
    assert {f["try_number"] for f in failures} == {1}  # no Airflow retry
    paths = [request["path"].split("?")[0] for request in api.requests]
    assert paths.count("/api/v1/activity") == 1  # no client retry either
    assert set(paths) == {"/api/v1/activity", "/api/v1/generation"} and paths.count("/api/v1/generation") <= 4
    assert len(slack.payloads("data-eng")) == 1  # one cause, one page
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_alert_runs").fetchone()[0] == 0


def test_today_is_refused_by_the_cli_before_anything_is_written(tmp_path):
    home = tmp_path / "home"
    result = run_cli(["run", "--start", TODAY.isoformat()], base_env(home), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"openrouter-spend run: {TODAY} is not a completed UTC day yet (today is "
                                     f"{TODAY} UTC): its usage is still coming in; the last completed day is {DAY}")
    assert not home.exists()


def test_invalid_configuration_is_refused_by_the_cli_before_the_first_api_call(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "include" / "config", config)
    owners = config / "owners.yaml"
    owners.write_text(owners.read_text().replace("daily: 15", "daily: lots", 1))
    api = RecordingHttpServer(lambda method, path, body: (200, {"data": []}))
    home = tmp_path / "home"
    try:
        result = run_cli(["run", "--start", DAY.isoformat()],
                         base_env(home, OPENROUTER_SPEND_CONFIG_DIR=str(config), OPENROUTER_BASE_URL=api.url,
                                  OPENROUTER_MANAGEMENT_KEY="sk-or-v1-unused"), timeout=120)
    finally:
        api.close()
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "owners.yaml" in result.stderr and "daily" in result.stderr
    assert api.requests == []
    assert sorted(path.name for path in home.iterdir()) == [".lock"]  # no warehouse, no Airflow home


RUN_TODAY = """
import json, sys
from datetime import date
from openrouter_spend.runner import run_days
outcome = run_days([date.fromisoformat(sys.argv[1])])[0]
print(json.dumps({"state": outcome.state, "failed": outcome.failed_tasks}))
"""


def test_today_through_the_dag_fails_its_first_tasks_once_and_writes_no_alert_run(hostile_run, tmp_path):
    """A run for today triggered past the CLI (the Airflow UI, a backfill command) on a home with data."""
    home = tmp_path / "home"
    shutil.copytree(hostile_run.home, home)
    (home / "airflow" / "task_failures.jsonl").unlink(missing_ok=True)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        alert_runs = con.execute("select usage_date, run_id from marts.fct_alert_runs order by all").fetchall()
    slack = SlackStandIn()
    try:
        env = hostile_env(home, OPENROUTER_SPEND_CONFIG_DIR=str(world_config(home)),
                          OPENROUTER_BASE_URL="http://127.0.0.1:9/api/v1",
                          OPENROUTER_MANAGEMENT_KEY="sk-or-v1-unused", OPENROUTER_SPEND_TASK_RETRIES="3",
                          OPENROUTER_SPEND_TASK_RETRY_DELAY="30", **{SLACK_ROUTES["data-eng"]: slack.webhook("data-eng")})
        done = subprocess.run([sys.executable, "-c", RUN_TODAY, TODAY.isoformat()], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    finally:
        slack.close()
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "failed"
    failures = _failures(home)
    assert sorted((f["task_id"], f["try_number"], f["error_type"]) for f in failures) == [
        ("check_activity_window", 1, "InvalidDayError"), ("prepare_warehouse", 1, "InvalidDayError")]
    assert all("is not a completed UTC day yet" in f["error"] for f in failures)
    assert len(slack.payloads("data-eng")) == 1
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select usage_date, run_id from marts.fct_alert_runs order by all").fetchall() == alert_runs
        assert con.execute("select count(*) from meta.generation_queue where usage_date = ?",
                           [TODAY]).fetchone()[0] == 0
