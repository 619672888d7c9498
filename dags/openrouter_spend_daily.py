"""
### openrouter_spend_daily

Pulls one completed UTC day of OpenRouter usage and loads it into the DuckDB warehouse.

* **Schedule**: daily, for the UTC day that just ended (`CronDataIntervalTimetable`); the partition is
  the data interval start. Backfill with `airflow backfill create` or `openrouter-spend run`.
* **Flow**: check the day is still in the API's 30-day window (landing the account-level activity) →
  snapshot credits, workspaces, keys, models and providers → per-key activity, mapped over key chunks →
  reconcile per-key against account totals → load `raw.*` (partition swap) → build `staging.*`; beside
  it, app request logs are ingested and sampled ids enriched through /generation →
  build `marts.*` (config validated; only the partitions the day reaches) → audit the day with Great
  Expectations (write–audit–publish: a failure stops publishing) → evaluate the decision rules into the
  alert ledger (decision alerts `blocked` and a `data_quality` alert when the audit failed) → deliver alerts
  (skipped when nothing is to be sent; settled before publishing) → publish the analysts' copy → write the
  finance digest (→ e-mail it) and the FOCUS export → summary.
* **Outputs**: landing files under `$OPENROUTER_SPEND_HOME/landing/openrouter/date=<day>/`, tables in
  `$OPENROUTER_SPEND_HOME/warehouse.duckdb`, the read-only copy `published/warehouse.duckdb`, alerts in
  `alerts/<day>.jsonl` (and Slack/email routes), the digest in `digests/<day>/`, FOCUS in `focus/`.
* HTTP tasks run on any worker and only write landing files; every task that opens DuckDB runs in the
  `duckdb` pool (1 slot) on the `warehouse` queue.
* **Failures**: errors no retry can fix (401, 402, 403, a day that has not ended, invalid configuration,
  landed data that cannot be loaded, a failed quality gate) fail their task at once; others are retried.
  The rules run only when the quality gate ran (passed or failed), never on a day that was not built.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import CronDataIntervalTimetable, ExceptionRetryPolicy, RetryAction, RetryRule, dag, task
from airflow.sdk.exceptions import AirflowSkipException

from openrouter_spend.alerts.notifications import PipelineFailureNotifier, record_task_failure

WAREHOUSE = {"pool": "duckdb", "queue": "warehouse"}
# Errors no retry can fix: each needs a person (a key, a top-up, a fixed file, a later day, fixed data).
PERMANENT_ERRORS = ExceptionRetryPolicy(rules=[RetryRule(
    exception=[
        "openrouter_spend.ingest.client.AuthenticationError",  # 401
        "openrouter_spend.ingest.client.PaymentRequiredError",  # 402
        "openrouter_spend.ingest.client.PermissionDeniedError",  # 403
        "openrouter_spend.ingest.client.ConfigurationError",  # no base URL or key
        "openrouter_spend.preflight.InvalidDayError",  # the day has not ended
        "openrouter_spend.config.yamlnode.ConfigError",  # owners, premium, annotations, rules
        "openrouter_spend.ingest.load.LandingDataError",  # a retry would re-read the same landed files
        "openrouter_spend.quality.QualityGateFailed",  # the data, not the attempt, is wrong
    ],
    action=RetryAction.FAIL,
    reason="permanent error: retrying cannot fix it",
)])


def _day(data_interval_start):
    return data_interval_start.in_timezone("UTC").date()


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["openrouter", "spend", "extract"],
    default_args={
        "owner": "data-engineering",
        "retries": int(os.environ.get("OPENROUTER_SPEND_TASK_RETRIES", "3")),
        "retry_delay": timedelta(seconds=float(os.environ.get("OPENROUTER_SPEND_TASK_RETRY_DELAY", "30"))),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "retry_policy": PERMANENT_ERRORS,
        "on_failure_callback": [record_task_failure, PipelineFailureNotifier()],
    },
)
def openrouter_spend_daily():
    @task(**WAREHOUSE)
    def prepare_warehouse(data_interval_start=None) -> list[int]:
        """Check the day has ended, then apply pending warehouse migrations."""
        from openrouter_spend.pipeline import prepare_warehouse

        return prepare_warehouse(_day(data_interval_start))

    @task
    def check_activity_window(data_interval_start=None, run_id=None) -> dict:
        """Land the day's account-level activity, or record that it left the 30-day window."""
        from openrouter_spend.pipeline import check_activity_window

        return check_activity_window(_day(data_interval_start), run_id)

    @task
    def extract_snapshots(window: dict, data_interval_start=None, run_id=None, ti=None) -> list[list[str]]:
        """Land credits, workspaces, keys, models and providers; return the key chunks to fetch."""
        from openrouter_spend.pipeline import extract_snapshots

        if not window["in_window"]:
            raise AirflowSkipException(window["reason"])
        plan = extract_snapshots(_day(data_interval_start), run_id)
        ti.xcom_push(key="skipped", value=plan["skipped"])
        return plan["fetch_chunks"]

    @task(map_index_template="{{ task.op_kwargs['key_hashes'] | length }} keys")
    def extract_key_activity(key_hashes: list[str], data_interval_start=None, run_id=None, ti=None) -> dict:
        """Land per-key activity for one chunk of keys."""
        from openrouter_spend.pipeline import extract_key_activity

        return extract_key_activity(_day(data_interval_start), run_id, key_hashes, f"chunk{ti.map_index:03d}")

    @task(trigger_rule="none_failed")
    def reconcile_key_activity(window: dict, chunk_totals: list[dict], data_interval_start=None, run_id=None,
                               ti=None) -> dict:
        """Check per-key activity covers the account total; fetch skipped keys when it does not."""
        from openrouter_spend.pipeline import reconcile_keys

        if not window["in_window"]:
            raise AirflowSkipException(window["reason"])
        # Indexing, unlike iterating, does not probe one XCom past the end of the mapped results.
        totals = [chunk_totals[index] for index in range(len(chunk_totals))] if chunk_totals else []
        skipped = ti.xcom_pull(task_ids="extract_snapshots", key="skipped") or []
        return reconcile_keys(_day(data_interval_start), run_id, window["account"], totals, skipped)

    @task(**WAREHOUSE)
    def ingest_request_logs(data_interval_start=None, run_id=None) -> dict:
        """Load new or changed app request logs; plan the /generation calls within the daily budget."""
        from openrouter_spend.pipeline import ingest_request_logs

        return ingest_request_logs(_day(data_interval_start), run_id)

    @task
    def enrich_generations(data_interval_start=None, run_id=None) -> dict:
        """Fetch /generation for the planned ids and land the answers (HTTP only)."""
        from openrouter_spend.pipeline import enrich_generations

        return enrich_generations(_day(data_interval_start), run_id)

    @task(trigger_rule="all_done", **WAREHOUSE)
    def load_generations(data_interval_start=None, run_id=None) -> dict:
        """Load landed /generation records; not-yet-available ids stay queued for later runs."""
        from openrouter_spend.pipeline import load_generations

        return load_generations(_day(data_interval_start), run_id)

    @task(trigger_rule="none_failed", **WAREHOUSE)
    def load_raw(data_interval_start=None, run_id=None) -> dict:
        """Replace the day's raw partition with this run's landing batches."""
        from openrouter_spend.pipeline import load_raw

        return load_raw(_day(data_interval_start), run_id)

    @task(**WAREHOUSE)
    def build_staging() -> list[str]:
        """Recreate the typed, deduplicated staging views."""
        from openrouter_spend.pipeline import refresh_staging

        return refresh_staging()

    @task(**WAREHOUSE)
    def build_marts(data_interval_start=None) -> dict:
        """Rebuild the unit-economics marts for the day and the windows it feeds."""
        from openrouter_spend.pipeline import build_marts

        return build_marts(_day(data_interval_start))

    @task(**WAREHOUSE)
    def validate_warehouse(data_interval_start=None, run_id=None) -> dict:
        """Validate the day with Great Expectations; any failed expectation stops publishing."""
        from openrouter_spend.pipeline import validate_warehouse

        return validate_warehouse(_day(data_interval_start), run_id)

    # one_done: after the gate passed or failed (to block decision alerts), skipped when the gate never ran.
    @task(trigger_rule="one_done", **WAREHOUSE)
    def evaluate_rules(data_interval_start=None, run_id=None) -> dict:
        """Write the day's alert ledger; runs after a failed quality gate too, to block decision alerts."""
        from openrouter_spend.pipeline import evaluate_alerts

        return evaluate_alerts(_day(data_interval_start), run_id)

    @task(**WAREHOUSE)
    def emit_alerts(evaluation: dict, data_interval_start=None, run_id=None) -> dict:
        """Deliver the day's alerts to files, Slack and email; skipped when nothing is to be sent."""
        from openrouter_spend.pipeline import emit_alerts

        if not evaluation.get("to_send"):
            raise AirflowSkipException("no alert to send for this day")
        return emit_alerts(_day(data_interval_start), run_id)

    @task(**WAREHOUSE)
    def publish_warehouse() -> str:
        """Atomically replace the analysts' read-only copy."""
        from openrouter_spend.pipeline import publish_warehouse

        return publish_warehouse()

    @task(**WAREHOUSE)
    def write_digest(data_interval_start=None) -> dict:
        """Write the finance digest and its CSVs from the published copy."""
        from openrouter_spend.pipeline import write_digest

        return write_digest(_day(data_interval_start))

    @task(**WAREHOUSE)
    def export_focus(data_interval_start=None) -> dict:
        """Write the FOCUS export (CSV and Parquet) from the published copy."""
        from openrouter_spend.pipeline import export_focus

        return export_focus(_day(data_interval_start))

    # On the warehouse worker, which holds the digest folder; a failed e-mail retries without re-rendering.
    @task(**WAREHOUSE)
    def mail_digest(data_interval_start=None) -> dict:
        """E-mail the written digest to finance when configured."""
        from openrouter_spend.pipeline import mail_digest

        return mail_digest(_day(data_interval_start))

    # none_failed: a day with no alert to send (emit_alerts skipped) is summarised; a failed delivery is not.
    @task(trigger_rule="none_failed", **WAREHOUSE)
    def summarize_day(data_interval_start=None) -> dict:
        """Log row counts and the day's spend."""
        from openrouter_spend.pipeline import summarize_day

        return summarize_day(_day(data_interval_start))

    migrated = prepare_warehouse()
    window = check_activity_window()
    key_chunks = extract_snapshots(window)
    chunk_totals = extract_key_activity.expand(key_hashes=key_chunks)
    reconciled = reconcile_key_activity(window, chunk_totals)
    key_chunks >> reconciled
    loaded = load_raw()
    [migrated, window, reconciled] >> loaded
    marts = build_marts()
    loaded >> build_staging() >> marts
    generations = load_generations()
    migrated >> ingest_request_logs() >> enrich_generations() >> generations >> marts
    validated = validate_warehouse()
    marts >> validated
    evaluation = evaluate_rules()
    validated >> evaluation
    emitted = emit_alerts(evaluation)
    # Deliveries settle before the copy is taken, so analysts see them sent; a failed delivery does not hold
    # back the data (its ledger row says failed) but still fails the run through summarize_day.
    alerts_settled = EmptyOperator(task_id="alerts_settled", trigger_rule="all_done",
                                   doc_md="The day's alert deliveries are settled: sent, failed or skipped.")
    published = publish_warehouse()
    emitted >> alerts_settled
    [validated, evaluation, alerts_settled] >> published
    digest = write_digest()
    published >> [digest, export_focus()] >> summarize_day() << emitted
    digest >> mail_digest()


openrouter_spend_daily()
