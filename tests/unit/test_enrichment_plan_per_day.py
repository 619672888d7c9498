"""The /generation plan of a backfill: one bounded transaction per usage day, rebuilt whole after a crash."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from openrouter_spend.ingest import enrich, enrich_plan, requests_log
from openrouter_spend.warehouse import connect, migrate

DAYS = [date(2026, 11, 20) + timedelta(days=offset) for offset in range(3)]
IDS_PER_DAY = 40
SETTINGS = enrich.EnrichmentSettings(daily_call_budget=10, min_sample_per_stratum=2)


class RecordingConnection:
    """A DuckDB connection that notes each usage day's working set and can fail one commit."""

    def __init__(self, con, fail_commit: int | None = None):
        self._con = con
        self._fail_commit = fail_commit
        self.commits = 0
        self.working_sets: list[tuple[int, int]] = []  # (ids, distinct usage days) of each day's working table

    def execute(self, sql, *args):
        statement = " ".join(sql.split()).lower()
        if statement == "commit":
            self.commits += 1
            if self.commits == self._fail_commit:
                raise RuntimeError("simulated crash while committing")
        result = self._con.execute(sql, *args)
        if statement.startswith("create or replace temp table day_ids"):
            self.working_sets.append(self._con.execute(
                "select count(*), count(distinct usage_date) from day_ids").fetchone())
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def _home(tmp_path, monkeypatch, name: str):
    """A home whose landing folder holds three days of logs (ids only) before the first run, ingested at once."""
    home = tmp_path / name
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(home))
    root = home / "requests"
    root.mkdir(parents=True)
    for day in DAYS:
        lines = [{"generation_id": f"gen-{day}-{project}-{i}", "created_at": f"{day}T01:00:00Z", "project": project,
                  "requested_model": "m/a"} for project, count in (("search", 30), ("bot", 10)) for i in range(count)]
        # one id logged again the next day: it belongs to its first day only
        if day != DAYS[0]:
            lines.append({"generation_id": f"gen-{day - timedelta(days=1)}-search-0",
                          "created_at": f"{day}T00:01:00Z", "project": "search", "requested_model": "m/a"})
        (root / f"{day}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with connect(home / "w.duckdb") as con:
        migrate(con)
        requests_log.ingest(con, root, quarantine_dir=home / "q")
    return home / "w.duckdb"


def _queue(con) -> list[tuple]:
    return con.execute("select generation_id, usage_date, sampling_stratum, status from meta.generation_queue "
                       "order by generation_id").fetchall()


def _worklist(day: date, run_id: str) -> list[str]:
    return json.loads(enrich.worklist_path(day, run_id).read_text())["generation_ids"]


def test_a_backfill_is_planned_one_usage_day_at_a_time(tmp_path, monkeypatch):
    with connect(_home(tmp_path, monkeypatch, "clean")) as con:
        _check_backfill_plan(con)


def _check_backfill_plan(con) -> None:
    recording = RecordingConnection(con)
    plan = enrich_plan.plan_enrichment(recording, DAYS[-1], "run-1", SETTINGS)

    # every earlier day with ids never queued is planned, each in its own transaction over its own ids only
    assert set(plan["usage_days"]) == {day.isoformat() for day in DAYS}
    assert recording.commits == len(DAYS)
    assert recording.working_sets == [(IDS_PER_DAY, 1)] * len(DAYS)
    assert plan["calls_planned"] == len(_worklist(DAYS[-1], "run-1")) == SETTINGS.daily_call_budget * len(DAYS)
    per_day = con.execute("select usage_date, status, count(*) from meta.generation_queue group by all "
                          "order by all").fetchall()
    assert per_day == [(day, status, n) for day in DAYS for status, n in (("not_sampled", 30), ("pending", 10))]

    # a rerun re-derives the same plan and changes no queue row
    before = con.execute("select * from meta.generation_queue order by generation_id").fetchall()
    again = enrich_plan.plan_enrichment(con, DAYS[-1], "run-2", SETTINGS)
    assert (again["new_ids"], again["calls_planned"]) == (0, plan["calls_planned"])
    assert con.execute("select * from meta.generation_queue order by generation_id").fetchall() == before


@pytest.mark.parametrize("failing_commit", [1, 2, 3])
def test_a_plan_that_crashed_is_rebuilt_by_the_retry_as_a_clean_run_plans_it(tmp_path, monkeypatch, failing_commit):
    with connect(_home(tmp_path, monkeypatch, "clean")) as clean:
        enrich_plan.plan_enrichment(clean, DAYS[-1], "run-1", SETTINGS)
        expected, expected_worklist = _queue(clean), _worklist(DAYS[-1], "run-1")
    with connect(_home(tmp_path, monkeypatch, "crashed")) as con:
        _crash_then_retry(con, failing_commit)
        assert _queue(con) == expected
        assert _worklist(DAYS[-1], "run-1") == expected_worklist


def _crash_then_retry(con, failing_commit: int) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        enrich_plan.plan_enrichment(RecordingConnection(con, fail_commit=failing_commit), DAYS[-1], "run-1", SETTINGS)
    # what a commit that failed half-way can leave behind: some of the day's rows written, with stale states
    con.execute("insert or replace into meta.generation_queue (generation_id, usage_date, sampling_stratum, status, "
                "planned_on, planned_run_id) select generation_id, usage_date, 'stale', 'not_sampled', usage_date, "
                "'run-0' from raw.request_log where usage_date = ? and generation_id like '%-bot-%'",
                [DAYS[failing_commit - 1]])

    enrich_plan.plan_enrichment(con, DAYS[-1], "run-1", SETTINGS)
