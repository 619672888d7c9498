"""A backfill on real-API semantics: the realapi world through `openrouter-spend run` on the emulator's wall clock.

The server's Date is the real time and /credits and /keys describe "now" (today's spend included), so every
snapshot of the backfill but yesterday's is late; two small projects log every request (atlas with
openrouter_metadata and usage, ledger with ids only, classified through /generation) and every log is
present before the first run. One build, many assertions: every day is published, per-request costs add up
to /activity per project and day, every logged request of a day within its budget is measured and
classified, the gate and the digest say which snapshots they could not use and why, and the scheduler of
`make airflow` takes the backfill's days as its own (it neither repeats nor skips one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from cli_fixtures import SCHEDULER_LOOPS, airflow_env, cli_env

from openrouter_emulator import build_org
from openrouter_spend.ingest.fallbacks import classify_many

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=offset) for offset in (3, 2, 1)]
LOGGED = ("atlas", "ledger")


def _env(home: Path) -> dict[str, str]:
    env = cli_env(home, GX_ANALYTICS_ENABLED="False")
    del env["OPENROUTER_EMULATOR_CLOCK"]  # the emulator's default clock: wall
    return env


@pytest.fixture(scope="module")
def backfill_run(tmp_path_factory) -> tuple[Path, datetime]:
    """`openrouter-spend run --days 3` (the three days before today) on the default (wall) clock, and when it
    was invoked."""
    home = tmp_path_factory.mktemp("realapi") / "home"
    invoked = datetime.now(UTC)
    result = subprocess.run([sys.executable, "-m", "openrouter_spend.cli", "run", "--days", "3",
                             "--scenario", "realapi"],
                            env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "realapi', wall clock" in result.stdout
    return home, invoked


@pytest.fixture(scope="module")
def backfill(backfill_run) -> Path:
    return backfill_run[0]


def rows(home: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home / "published" / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_every_day_of_the_backfill_is_published_yesterday_included(backfill):
    passed = dict(rows(backfill, "select usage_date, arg_max(status, validated_at) from marts.fct_quality_runs "
                                 "group by 1"))
    assert passed == {day: "passed" for day in DAYS}
    for day in DAYS:
        assert (backfill / "digests" / day.isoformat() / "digest.html").is_file()
    assert rows(backfill, "select count(*) from marts.fct_alerts where status = 'blocked'") == [(0,)]


def test_per_request_cost_adds_up_to_activity_per_project_and_day(backfill):
    per_request = {(d, p): cost for d, p, cost in rows(
        backfill, "select usage_date, project, sum(cost_usd) from marts.fct_generations group by all")}
    activity = {(d, p): spend for d, p, spend in rows(
        backfill, "select usage_date, project, sum(spend_usd) from marts.fct_daily_spend group by all")}
    org = build_org("realapi", anchor_date=TODAY)
    for day in DAYS:
        for project in LOGGED:
            truth = sum(r.usage_nanos for k, r in org.iter_key_rows(day) if k.workspace_name == project) / 1e9
            assert activity[(day, project)] == pytest.approx(truth, abs=1e-9)
            assert per_request[(day, project)] == pytest.approx(activity[(day, project)], abs=0.01)
            assert abs(per_request[(day, project)] - activity[(day, project)]) < 1e-6  # exact, not just a cent
    # Projects that log nothing have no per-request rows (and nothing is imputed for them).
    assert {p for _, p in per_request} == set(LOGGED)


def test_every_logged_request_of_a_day_within_budget_is_measured_and_classified(backfill):
    org = build_org("realapi", anchor_date=TODAY)
    for day in DAYS:
        logged = {e["generation_id"] for e in org.app_request_log(day) if e["project"] in LOGGED}
        found = rows(backfill, "select generation_id, is_cost_measured, is_fallback, sampling_weight, "
                               "enrichment_status from marts.fct_generations where usage_date = ?", [day])
        assert {r[0] for r in found} == logged
        assert all(measured and is_fallback is not None and weight == 1.0 for _, measured, is_fallback, weight, _
                   in found)
        # ledger logs ids only: a census, one /generation call per request of the day, none left unsampled
        calls = rows(backfill, "select status, count(*), sum(attempts) from meta.generation_queue "
                               "where usage_date = ? group by 1", [day])
        ledger = sum(1 for e in org.app_request_log(day) if e["project"] == "ledger")
        assert calls == [("fetched", ledger, ledger)]


def test_fallback_shares_match_the_truth(backfill):
    org = build_org("realapi", anchor_date=TODAY)
    fallbacks = 0
    for day in DAYS:
        logged = [entry for entry in org.app_request_log(day) if entry["project"] in LOGGED]
        outcomes = classify_many([{"generation": org.generation(entry["generation_id"]),
                                   "requested_model": entry["requested_model"]} for entry in logged])
        truth: dict[str, list[bool]] = {}
        for entry, outcome in zip(logged, outcomes, strict=True):
            truth.setdefault(entry["project"], []).append(outcome.is_fallback)
        shares = dict(rows(backfill, "select project, sum(fallback_requests) / sum(requests) "
                                     "from marts.fct_fallback_daily where usage_date = ? group by 1", [day]))
        for project, flags in truth.items():
            assert shares[project] == pytest.approx(sum(flags) / len(flags), abs=0.5 / len(flags))
            fallbacks += sum(flags)
    assert fallbacks > 0


def test_late_snapshots_are_skipped_named_and_leave_the_balance_unknown(backfill):
    results = {(d, c): (compared, reason) for d, c, compared, reason in rows(
        backfill, "select usage_date, check_id, compared_values, skip_reason from marts.fct_quality_results "
                  "where dataset like 'reconcile.%'")}
    for day in DAYS:
        compared, reason = results[(day, "reconcile.credits_vs_activity:usage_delta_matches_activity")]
        assert compared == "skipped"
        if day == DAYS[-1]:  # yesterday's snapshot is on time, but every earlier one is late
            assert reason.startswith("no earlier /credits snapshot describes the end of its day")
        else:
            assert reason.startswith(f"the /credits snapshot of {day} (late: fetched {TODAY}")
        assert results[(day, "reconcile.per_request_vs_activity:measured_cost_within_activity")][0] == "measured"
    balances = {d: (b, timing, topup) for d, b, timing, topup in rows(
        backfill, "select as_of_date, balance_usd, snapshot_timing, topup_usd from marts.fct_credit_balance")}
    assert [balances[d][1] for d in DAYS] == ["late", "late", "on_time"]
    assert balances[DAYS[0]][0] is None and balances[DAYS[0]][2] is None
    # Yesterday's balance is the end of yesterday, not the fetch time (its usage less today's spend so far).
    org = build_org("realapi", anchor_date=TODAY)
    credits, usage = org.credits_as_of(datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC))
    # /credits and the /keys pages that give today's spend so far are fetched moments apart on the wall clock:
    # the estimate is off by at most what was spent between the fetches. fetched_at is the server's Date header,
    # whole seconds, so the last answer was produced within the second after the latest fetched_at.
    fetches = [at for (at,) in rows(backfill, "select fetched_at from raw.credits where partition_date = ? union all "
                                              "select fetched_at from raw.keys where partition_date = ?",
                                    [DAYS[-1], DAYS[-1]])]
    used_between = [org.credits_as_of(at, include_today=True)[1]
                    for at in (min(fetches), max(fetches) + timedelta(seconds=1))]
    assert balances[DAYS[-1]][0] == pytest.approx(credits - usage, abs=used_between[1] - used_between[0] + 1e-6)
    assert balances[DAYS[-1]][2] is None  # the previous snapshot describes "now" too: a top-up is unknown
    digest = (backfill / "digests" / DAYS[0].isoformat() / "digest.md").read_text()
    assert f"/credits usage was not reconciled with activity: the /credits snapshot of {DAYS[0]} (late" in digest
    assert "The credit balance, top-up and runway at the end of this day are unknown" in digest
    summary = json.loads((backfill / "digests" / DAYS[-1].isoformat() / "summary.json").read_text())
    assert summary["balance_usd"] == pytest.approx(credits - usage, abs=0.01)


# `airflow dags reserialize` (the dag-processor's parse, as the CLI command runs it), in the process that then
# runs the scheduler's loops: one start of Airflow instead of two.
RESERIALIZE = """
import sys
from airflow.__main__ import main as airflow_cli

sys.argv = ["airflow", "dags", "reserialize"]
airflow_cli()
"""


def _midnight(day) -> str:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC).isoformat()


def test_the_scheduler_neither_repeats_nor_skips_the_days_a_cli_run_made(backfill_run, tmp_path):
    # On a copy: `make airflow`'s scheduler takes over the home's metadata database after the backfill.
    source, invoked = backfill_run
    home = shutil.copytree(source, tmp_path / "home", symlinks=True)
    airflow = airflow_env(_env(home))
    scheduled = subprocess.run([sys.executable, "-c", RESERIALIZE + SCHEDULER_LOOPS], env=airflow, cwd=ROOT,
                               capture_output=True, text=True, timeout=300)
    assert scheduled.returncode == 0, scheduled.stderr[-3000:]
    view = json.loads(scheduled.stdout.strip().splitlines()[-1])

    # One run per day, all made by the CLI, each under the scheduler's identity for its day.
    assert sorted((run["logical_date"], run["run_type"]) for run in view["runs"]) == [
        (_midnight(day), "manual") for day in DAYS]
    for run in view["runs"]:
        start = datetime.fromisoformat(run["logical_date"])
        assert run["interval"] == [start.isoformat(), (start + timedelta(days=1)).isoformat()]
        # The UI's run duration is end − start: the wall-clock start, not the logical date of a past day.
        assert invoked <= datetime.fromisoformat(run["started"]) <= datetime.fromisoformat(run["ended"])
    # The scheduler took yesterday as done (no second run) and moves on to today, due when it ends.
    assert view["loops"] == 1
    assert view["next_dagrun"] == _midnight(TODAY)
    assert view["next_dagrun_create_after"] == _midnight(TODAY + timedelta(days=1))
