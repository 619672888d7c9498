"""The daily DAG's tasks as Airflow calls them: each builds the run's context once and runs its pipeline step.

The DAG file only decorates and wires these. Their names are the task ids and their docstrings the task docs.
A task reads the run (usage day, run id) from Airflow's context; everything else comes from RunContext.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from openrouter_spend import pipeline
from openrouter_spend.alerts.notifications import PipelineFailureNotifier, record_task_failure
from openrouter_spend.context import RunContext, usage_day

# Every task that opens DuckDB: one at a time (the pool has one slot), on the worker that holds the file.
WAREHOUSE = {"pool": "duckdb", "queue": "warehouse"}

# Errors no retry can fix: each needs a person (a key, a top-up, a fixed file, a later day, fixed data).
PERMANENT_ERRORS = ExceptionRetryPolicy(rules=[RetryRule(
    exception=[
        "openrouter_spend.ingest.client.AuthenticationError",  # 401
        "openrouter_spend.ingest.client.PaymentRequiredError",  # 402
        "openrouter_spend.ingest.client.PermissionDeniedError",  # 403
        "openrouter_spend.ingest.client.ConfigurationError",  # no base URL or key
        "openrouter_spend.preflight.InvalidDayError",  # the day has not ended
        "openrouter_spend.config.yamlnode.ConfigError",  # owners, premium, annotations, rules, quality
        "openrouter_spend.ingest.load.LandingDataError",  # a retry would re-read the same landed files
        "openrouter_spend.quality.QualityGateFailed",  # the data, not the attempt, is wrong
    ],
    action=RetryAction.FAIL,
    reason="permanent error: retrying cannot fix it",
)])


def default_args() -> dict[str, Any]:
    """Retries with backoff for transient errors (OPENROUTER_SPEND_TASK_RETRIES / _RETRY_DELAY), none for
    permanent ones, and failure reporting."""
    return {
        "owner": "data-engineering",
        "retries": int(os.environ.get("OPENROUTER_SPEND_TASK_RETRIES", "3")),
        "retry_delay": timedelta(seconds=float(os.environ.get("OPENROUTER_SPEND_TASK_RETRY_DELAY", "30"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": PERMANENT_ERRORS,
        "on_failure_callback": [record_task_failure, PipelineFailureNotifier()],
    }


def _skip_outside_window(window: dict) -> None:
    if not window["in_window"]:
        raise AirflowSkipException(window["reason"])


def refuse_second_run_of_day(airflow: dict) -> None:
    """Fail a manual run that would process a day a second time under another logical date.

    The run of usage day D has logical date D 00:00 (scheduled, or `openrouter-spend run`), and the
    scheduler knows a day by that date alone. A manual run triggered at another time covers the last
    complete day under its own logical date: when that day already has its run, running it again would
    give the day two runs, so the run stops before it writes anything (clear the day's run to redo it).
    """
    dag_run, start = airflow["dag_run"], airflow["data_interval_start"]
    if dag_run.logical_date is None or dag_run.logical_date == start:
        return
    if airflow["ti"].get_dr_count(dag_id=dag_run.dag_id, logical_dates=[start]):
        raise AirflowFailException(
            f"{usage_day(start)} already has its run (logical date {start.isoformat()}): clear that run in "
            f"Airflow, or run `openrouter-spend run --start {usage_day(start)}`, to process the day again")


def prepare_warehouse() -> list[int]:
    """Check the day has ended and has no other run, then apply pending warehouse migrations."""
    refuse_second_run_of_day(get_current_context())
    return pipeline.prepare_warehouse(RunContext.current())


def check_activity_window() -> dict:
    """Land the day's account-level activity, or record that it left the 30-day window."""
    return pipeline.check_activity_window(RunContext.current())


def extract_snapshots(window: dict) -> list[list[str]]:
    """Land credits, workspaces, keys, models and providers; return the key chunks to fetch."""
    _skip_outside_window(window)
    plan = pipeline.extract_snapshots(RunContext.current())
    get_current_context()["ti"].xcom_push(key="skipped", value=plan["skipped"])
    return plan["fetch_chunks"]


def extract_key_activity(key_hashes: list[str]) -> dict:
    """Land per-key activity for one chunk of keys."""
    chunk = f"chunk{get_current_context()['ti'].map_index:03d}"
    return pipeline.extract_key_activity(RunContext.current(), key_hashes, chunk)


def reconcile_key_activity(window: dict, chunk_totals: list[dict]) -> dict:
    """Check per-key activity covers the account total; fetch skipped keys when it does not."""
    _skip_outside_window(window)
    # Indexing, unlike iterating, does not probe one XCom past the end of the mapped results.
    totals = [chunk_totals[index] for index in range(len(chunk_totals))] if chunk_totals else []
    skipped = get_current_context()["ti"].xcom_pull(task_ids="extract_snapshots", key="skipped") or []
    return pipeline.reconcile_keys(RunContext.current(), window["account"], totals, skipped)


def ingest_request_logs() -> dict:
    """Load new or changed app request logs; plan the /generation calls within the daily budget."""
    return pipeline.ingest_request_logs(RunContext.current())


def enrich_generations() -> dict:
    """Fetch /generation for the planned ids and land the answers (HTTP only)."""
    return pipeline.enrich_generations(RunContext.current())


def load_generations() -> dict:
    """Load landed /generation records; not-yet-available ids stay queued for later runs."""
    return pipeline.load_generations(RunContext.current())


def load_raw() -> dict:
    """Replace the day's raw partition with this run's landing batches."""
    return pipeline.load_raw(RunContext.current())


def build_staging() -> list[str]:
    """Recreate the typed, deduplicated staging views."""
    return pipeline.refresh_staging(RunContext.current())


def build_marts() -> dict:
    """Rebuild the unit-economics marts for the day and the windows it feeds."""
    return pipeline.build_marts(RunContext.current())


def validate_warehouse() -> dict:
    """Validate the day with Great Expectations; any failed expectation stops publishing."""
    return pipeline.validate_warehouse(RunContext.current())


def evaluate_rules() -> dict:
    """Write the day's alert ledger; runs after a failed quality gate too, to block decision alerts."""
    return pipeline.evaluate_alerts(RunContext.current())


def emit_alerts(evaluation: dict) -> dict:
    """Deliver the day's alerts and the week's savings notices; skipped when neither has anything to send."""
    from openrouter_spend.alerts import savings_notices

    run = RunContext.current()
    if not evaluation.get("to_send") and not savings_notices.is_due(run.day):
        raise AirflowSkipException("no alert or savings notice to send for this day")
    return pipeline.emit_alerts(run)


def publish_warehouse() -> str:
    """Atomically replace the analysts' read-only copy."""
    return pipeline.publish_warehouse(RunContext.current())


def write_digest() -> dict:
    """Write the finance digest and its CSVs from the published copy."""
    return pipeline.write_digest(RunContext.current())


def export_focus() -> dict:
    """Write the FOCUS export (CSV and Parquet) from the published copy."""
    return pipeline.export_focus(RunContext.current())


def mail_digest() -> dict:
    """E-mail the written digest to finance when configured."""
    return pipeline.mail_digest(RunContext.current())


def summarize_day() -> dict:
    """Log row counts and the day's spend."""
    return pipeline.summarize_day(RunContext.current())
