"""The daily /generation call budget: stratified sample allocation and the enrichment plan."""

from __future__ import annotations

import json
from datetime import date

import pytest

from openrouter_spend.ingest import enrich, enrich_plan, requests_log
from openrouter_spend.warehouse import connect, migrate

DAY = date(2026, 11, 24)


@pytest.mark.parametrize(("counts", "budget", "minimum", "expected"), [
    ({"a": 3, "b": 2}, 10, 2, {"a": 3, "b": 2}),                  # the budget covers everything
    ({"a": 10, "b": 5, "c": 1}, 8, 2, {"a": 4, "b": 3, "c": 1}),  # floors 2+2+1, then 3 spare by size
    ({"a": 100, "b": 100}, 10, 2, {"a": 5, "b": 5}),
    # floors 2+2+1; 7 spare over capacities 88 and 7: 6.48 and 0.52 -> 6 + 0, the last call to the larger remainder
    ({"a": 90, "b": 9, "c": 1}, 12, 2, {"a": 8, "b": 3, "c": 1}),
    ({"a": 5, "b": 4, "c": 3}, 2, 2, {"a": 1, "b": 1}),           # not even the floors: largest strata first
    ({"a": 5}, 0, 2, {}),
])
def test_allocation(counts, budget, minimum, expected):
    allocation = enrich_plan.allocate_sample(counts, budget, minimum)
    assert allocation == expected
    assert sum(allocation.values()) == min(budget, sum(counts.values()))
    assert all(allocation[s] <= counts[s] for s in allocation)


def _log(tmp_path, lines):
    root = tmp_path / "requests"
    root.mkdir(exist_ok=True)
    (root / "day.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_plan_keeps_to_the_budget_with_a_stratified_sample_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path / "home"))
    lines = []
    for project, model, count in (("search", "m/a", 10), ("search", "m/b", 5), ("bot", "m/a", 1)):
        lines += [{"generation_id": f"{project}-{model}-{i}", "created_at": f"{DAY}T01:00:00Z", "project": project,
                   "requested_model": model} for i in range(count)]
    lines += [{"generation_id": f"meta-{i}", "created_at": f"{DAY}T01:00:00Z", "project": "search",
               "requested_model": "m/a", "openrouter_metadata": {"attempt": 1}} for i in range(4)]
    root = _log(tmp_path, lines)
    settings = enrich.EnrichmentSettings(daily_call_budget=8, min_sample_per_stratum=2)
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        requests_log.ingest(con, root, quarantine_dir=tmp_path / "q")
        plan = enrich_plan.plan_enrichment(con, DAY, "run-1", settings)
        queued = con.execute("select sampling_stratum, status, count(*) from meta.generation_queue "
                             "group by all order by all").fetchall()
        assert (plan["calls_planned"], plan["new_ids"], plan["not_sampled"]) == (8, 16, 8)
        assert queued == [
            ("bot | m/a | api", "pending", 1),
            ("search | m/a | api", "not_sampled", 6), ("search | m/a | api", "pending", 4),
            ("search | m/b | api", "not_sampled", 2), ("search | m/b | api", "pending", 3),
        ]
        # ids with openrouter_metadata never cost a call
        assert con.execute("select count(*) from meta.generation_queue where generation_id like 'meta-%'"
                           ).fetchone()[0] == 0
        worklist = json.loads(enrich.worklist_path(DAY, "run-1").read_text())["generation_ids"]
        pending = {gid for (gid,) in con.execute(
            "select generation_id from meta.generation_queue where status = 'pending'").fetchall()}
        assert set(worklist) == pending and len(worklist) == 8

        again = enrich_plan.plan_enrichment(con, DAY, "run-2", settings)
        assert (again["new_ids"], again["retries"], again["calls_planned"]) == (0, 8, 8)
        assert set(json.loads(enrich.worklist_path(DAY, "run-2").read_text())["generation_ids"]) == pending


def test_settings_from_the_environment_name_the_bad_variable(monkeypatch):
    monkeypatch.setenv("OPENROUTER_SPEND_GENERATION_CALL_BUDGET", "lots")
    with pytest.raises(ValueError, match="OPENROUTER_SPEND_GENERATION_CALL_BUDGET"):
        enrich.EnrichmentSettings.from_env()
    monkeypatch.setenv("OPENROUTER_SPEND_GENERATION_CALL_BUDGET", "250")
    monkeypatch.setenv("OPENROUTER_SPEND_ANALYTICS_DISCOVERY", "true")
    settings = enrich.EnrichmentSettings.from_env()
    assert (settings.daily_call_budget, settings.discovery_enabled) == (250, True)
