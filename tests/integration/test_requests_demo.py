"""The emulated applications' request logs through ingestion, enrichment and the marts: the outage's fallback surge
shows in fct_fallback_daily, projects that log nothing have no per-request rows, and the marts classify each
fetched generation exactly as openrouter_spend.ingest.fallbacks does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

from openrouter_emulator.request_logs import write_emulated_logs
from openrouter_spend.ingest import enrich, enrich_plan, requests_log
from openrouter_spend.ingest.fallbacks import classify_many
from openrouter_spend.warehouse import build_staging, connect, migrate
from openrouter_spend.warehouse.marts import build_marts


def _event(org, name):
    return next(e for e in org.events if e["event"] == name)


def test_outage_surge_coverage_and_consistent_classification(spend_home, emulator):
    org = emulator.org
    outage = _event(org, "provider_outage")
    outage_day, quiet_day = outage["start_date"], outage["start_date"] - timedelta(days=3)
    settings = enrich.EnrichmentSettings(daily_call_budget=30, requests_per_second=1000)
    for day in (quiet_day, outage_day):
        emulator.set_now(datetime.combine(day + timedelta(days=1), time(0, 10), tzinfo=UTC))
        written = write_emulated_logs(org, day)
        assert sorted(path.parent.name for path in written) == sorted(org.world.request_logging)
        with connect() as con:
            migrate(con)
            requests_log.ingest(con)
            plan = enrich_plan.plan_enrichment(con, day, f"run-{day}", settings)
        assert plan["calls_planned"] == 30 and plan["not_sampled"] > 0  # support-bot logs more than the budget
        enrich.enrich_pending(day, f"run-{day}", settings)
        with connect() as con:
            enrich.load_enrichment(con, day, f"run-{day}", settings)
    with connect() as con:
        build_staging(con)
        build_marts(con, [quiet_day, outage_day])
        shares = dict(con.execute(
            "select usage_date, sum(fallback_requests) / sum(requests) from marts.fct_fallback_daily "
            "where project = ? group by 1", [outage["project"]]).fetchall())
        projects = {p for (p,) in con.execute("select distinct project from marts.fct_generations").fetchall()}
        fetched = con.execute(
            "select generations.payload, generations.generation_id, marts.requested_model, marts.attempts, "
            "marts.fallback_kind, marts.is_fallback from marts.fct_generations as marts "
            "join raw.generations as generations using (generation_id)").fetchall()
        methods = {project: (method, classified == logged) for project, method, classified, logged in con.execute(
            "select project, any_value(estimate_method), sum(classified_requests), sum(requests) "
            "from marts.fct_fallback_daily group by 1").fetchall()}
    # Metadata-logging search classifies every request with zero calls: the Anthropic outage is a surge.
    assert shares[outage_day] > 0.4 > 0.15 > shares[quiet_day]
    # Every logged search request is classified, but the logged requests are a sample of search's traffic:
    # never a census; support-bot's are sampled twice (logged, then a /generation sample of those).
    assert methods[outage["project"]] == ("sample", True) and methods["support-bot"] == ("sample", False)
    # Workspaces whose apps log nothing have no per-request rows at all.
    assert projects.isdisjoint({"growth-experiments", "Default"})
    assert len(fetched) == 60
    expectations = classify_many([{"generation": json.loads(payload), "requested_model": requested}
                                  for payload, _, requested, *_ in fetched])
    for (_, generation_id, _, attempts, kind, is_fallback), expected in zip(fetched, expectations, strict=True):
        assert (attempts, kind, is_fallback) == (expected.attempts, expected.fallback_kind, expected.is_fallback), \
            generation_id
