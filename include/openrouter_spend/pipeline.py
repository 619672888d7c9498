"""Bodies of the daily DAG's tasks: plain functions of a RunContext (the day, the run, paths, configuration).

HTTP steps write only landing batches; warehouse steps open DuckDB, whose schema `prepare_warehouse` (the
first task) migrates for every later step. dag_tasks.py adapts them to Airflow. Errors keep their own types:
the DAG's retry policy fails a task at once on the permanent ones (401, 402, 403, an invalid day or
configuration, landed data that cannot be loaded, a failed quality gate) and retries the rest.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.context import RunContext
from openrouter_spend.ingest.landing import LandingBatch
from openrouter_spend.preflight import check_day
from openrouter_spend.warehouse import build_staging, connect, migrate, table_counts

log = logging.getLogger(__name__)

# Test hook, "<stage>:<path>": at that stage the task creates <path> and waits, so a test can kill the run
# (kill -9) at a known point and prove that a rerun repairs everything. Stages: "extract" (snapshots landed,
# the batch not committed) and "gate" (the gate's results recorded, the task not finished). The load has
# its own hook inside its transaction (load.py).
_PAUSE_ENV = "OPENROUTER_SPEND_TEST_PAUSE_AT"


def _pause_for_test(stage: str) -> None:
    name, _, marker = os.environ.get(_PAUSE_ENV, "").partition(":")
    if name == stage and marker:
        Path(marker).touch()
        time.sleep(300)


@contextmanager
def _landing_batch(day: date, run_id: str, name: str):
    """A landing batch that is committed only when the block succeeds."""
    batch = LandingBatch(settings.api_landing_root(), day, run_id, name)
    yield batch
    batch.commit()


def _client():
    """The OpenRouter client of the environment (imported here: the DAG file imports this module)."""
    from openrouter_spend.ingest.client import client_from_environment

    return client_from_environment()


def prepare_warehouse(run: RunContext | None = None) -> list[int]:
    """Check the day can be run (InvalidDayError before anything is written), then apply pending migrations.

    The only place a run migrates the warehouse: every later task relies on the schema being current.
    """
    if run is not None:
        check_day(run.day)
    with connect() as con:
        return migrate(con)


def check_activity_window(run: RunContext) -> dict[str, Any]:
    """Check the day has ended, then land its account-level activity, or record that it left the API window."""
    from openrouter_spend.ingest.extract import fetch_account_activity

    day, run_id = run.day, run.run_id
    check_day(day)
    with _client() as client, _landing_batch(day, run_id, "account_activity") as batch:
        check = fetch_account_activity(client, batch, day)
    return {"day": day.isoformat(), "in_window": check.in_window, "reason": check.reason,
            "account": check.totals.as_dict()}


def extract_snapshots(run: RunContext) -> dict[str, Any]:
    """Land credits, workspaces, keys, models and providers; plan the per-key activity calls."""
    from openrouter_spend.ingest.extract import chunked, fetch_snapshots, plan_key_activity

    day, run_id, extraction = run.day, run.run_id, run.extraction
    with _client() as client, _landing_batch(day, run_id, "snapshots") as batch:
        keys = fetch_snapshots(client, batch)
        _pause_for_test("extract")
        fetch, skipped = plan_key_activity(keys, day)
        batch.notes["key_plan"] = {"fetch": len(fetch), "skipped": len(skipped),
                                   "skip_reasons": _count_reasons(skipped)}
    log.info("%s: %d keys listed, %d to fetch, %d skipped (%s)", day, len(keys), len(fetch), len(skipped),
             _count_reasons(skipped))
    return {"fetch_chunks": chunked(fetch, extraction.key_chunk_size), "skipped": sorted(skipped),
            "keys_listed": len(keys)}


def _count_reasons(skipped: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in skipped.values():
        kind = reason.split(" 20")[0] if reason.startswith("last used") else reason
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def extract_key_activity(run: RunContext, key_hashes: list[str], chunk_name: str) -> dict[str, Any]:
    """Land per-key activity for one chunk of keys."""
    from openrouter_spend.ingest.extract import fetch_key_activity

    day, run_id, extraction = run.day, run.run_id, run.extraction
    with _client() as client, _landing_batch(day, run_id, f"key_activity_{chunk_name}") as batch:
        totals = fetch_key_activity(client, batch, day, key_hashes, extraction.key_activity_concurrency)
        batch.notes[f"key_activity_{chunk_name}"] = totals.as_dict()
    return totals.as_dict()


def reconcile_keys(run: RunContext, account: dict, chunk_totals: list[dict], skipped: list[str]) -> dict[str, Any]:
    """Make sure per-key activity accounts for the account total; fetch skipped keys if it does not."""
    from openrouter_spend.ingest.extract import ActivityTotals, reconcile_key_activity

    day, run_id, extraction = run.day, run.run_id, run.extraction
    fetched = ActivityTotals()
    for totals in chunk_totals:
        fetched = fetched + ActivityTotals(**totals)
    with _client() as client, _landing_batch(day, run_id, "key_reconciliation") as batch:
        return reconcile_key_activity(client, batch, day, ActivityTotals(**account), fetched, skipped,
                                      extraction.key_activity_concurrency)


def ingest_request_logs(run: RunContext) -> dict[str, Any]:
    """Load new or changed app request logs and plan the /generation calls (metadata first, within the budget)."""
    from openrouter_spend.ingest import enrich_plan, requests_log

    with connect() as con:
        ingested = requests_log.ingest(con)
        plan = enrich_plan.plan_enrichment(con, run.day, run.run_id)
    return {"ingested": {k: v for k, v in ingested.items() if k != "outcomes"}, "plan": plan}


def enrich_generations(run: RunContext) -> dict[str, Any]:
    """Call /generation for the planned ids and land every answer raw (HTTP only, no DuckDB)."""
    from openrouter_spend.ingest import enrich

    return enrich.enrich_pending(run.day, run.run_id)


def load_generations(run: RunContext) -> dict[str, Any]:
    """Load the run's landed /generation records and move the pending queue on (404s retried later)."""
    from openrouter_spend.ingest import enrich

    with connect() as con:
        return enrich.load_enrichment(con, run.day, run.run_id)


def load_raw(run: RunContext) -> dict[str, Any]:
    """Replace the day's raw partition with the run's committed landing batches."""
    from openrouter_spend.ingest.load import load_partition

    with connect() as con:
        # LandingDataError is permanent: a retry would re-read the same landed files; the run must re-extract.
        return load_partition(con, settings.api_landing_root(), run.day, run.run_id).as_dict()


def refresh_staging(run: RunContext | None = None) -> list[str]:
    """(Re)create the staging views."""
    with connect() as con:
        return build_staging(con)


def build_marts(run: RunContext) -> dict[str, int]:
    """Validate the configuration and rebuild the mart partitions the day (and late re-pulls) touch."""
    from openrouter_spend.ingest.requests_log import stale_days
    from openrouter_spend.warehouse.marts import build_marts as build

    config = run.owners  # validated before the warehouse is opened
    with connect() as con:
        # Days whose per-request data changed (late logs, enrichment) are rebuilt with this one.
        return build(con, [run.day, *stale_days(con)], config=config)


def publish_warehouse(run: RunContext | None = None) -> str:
    """Replace the analysts' read-only copy of the warehouse."""
    from openrouter_spend.warehouse.publish import publish_warehouse as publish

    return str(publish())


def validate_warehouse(run: RunContext) -> dict[str, Any]:
    """Audit the day before anything is published: the data-quality gate (results, Data Docs, summary)."""
    from openrouter_spend.quality import validate_day

    try:
        return validate_day(run.day, run.run_id, config_dir=run.config_dir)
    finally:
        _pause_for_test("gate")


def evaluate_alerts(run: RunContext) -> dict[str, Any]:
    """Evaluate the decision rules for the day and write the alert ledger (nothing is sent here)."""
    from openrouter_spend.alerts import evaluate_day

    return evaluate_day(run.day, run.run_id, config_dir=run.config_dir)


def emit_alerts(run: RunContext) -> dict[str, Any]:
    """Deliver the day's alerts, then the week's savings notices (raises AlertDeliveryFailed to be retried)."""
    from openrouter_spend.alerts import emit_day, savings_notices

    return {**emit_day(run.day, run.run_id, config_dir=run.config_dir),
            "savings_notices": savings_notices.emit_week(run.day, run.run_id, config_dir=run.config_dir)}


def write_digest(run: RunContext) -> dict[str, Any]:
    """Write the day's finance digest from the published copy."""
    from openrouter_spend.reports import digest

    return digest.write_digest(run.day)


def export_focus(run: RunContext) -> dict[str, Any]:
    """Write the day's FOCUS export (CSV and Parquet) from the published copy."""
    from openrouter_spend.reports import focus

    return focus.export_day(run.day)


def mail_digest(run: RunContext) -> dict[str, Any]:
    """E-mail the written digest to finance if configured."""
    from openrouter_spend.reports import digest

    return digest.mail_digest(run.day)


def summarize_day(run: RunContext) -> dict[str, Any]:
    """Row counts and the day's spend, for the task log and the CLI summary."""
    day = run.day
    with connect() as con:
        spend = con.execute(
            "select coalesce(sum(usage_usd), 0), coalesce(sum(byok_usage_usd), 0), coalesce(sum(requests), 0),"
            " count(distinct api_key_hash) from staging.stg_activity where usage_date = ?",
            [day],
        ).fetchone()
        gaps = con.execute(
            "select endpoint, reason from meta.extraction_gaps where partition_date = ?", [day]
        ).fetchall()
        counts = table_counts(con, ("raw",))
    summary = {"day": day.isoformat(), "spend_usd": round(spend[0], 6), "byok_spend_usd": round(spend[1], 6),
               "requests": int(spend[2]), "active_keys": int(spend[3]),
               "gaps": [{"endpoint": e, "reason": r} for e, r in gaps], "raw_rows": counts}
    log.info("summary for %s: %s", day, summary)
    return summary

