"""
### openrouter_spend_daily

Pulls one completed UTC day of OpenRouter usage and loads it into the DuckDB warehouse.

* **Schedule**: daily at 00:00 UTC for the day that just ended; the run's logical date is the usage day.
  A manual run at midnight covers the day starting there, one at any other time the last complete day.
  Backfill with `airflow backfill create` or `openrouter-spend run`.
* **Flow**: check the day is still in the API's 30-day window → snapshot credits, workspaces, keys, models
  and providers → per-key activity, mapped over key chunks → reconcile against account totals → load
  `raw.*` → `staging.*`; beside it, app request logs are ingested and sampled ids enriched through
  /generation → `marts.*` → the Great Expectations gate (a failure stops publishing) → decision rules into
  the alert ledger → deliver alerts (settled before publishing) → publish the analysts' copy → finance
  digest (→ e-mail) and FOCUS export → summary.
* **Outputs** under `$OPENROUTER_SPEND_HOME`: `landing/`, `warehouse.duckdb`, `published/`, `alerts/`,
  `digests/`, `focus/`. Every task that opens DuckDB runs in the `duckdb` pool on the `warehouse` queue.
* **Failures**: errors no retry can fix (401, 402, 403, a day that has not ended, invalid configuration,
  unloadable landed data, a failed quality gate) fail their task at once; others are retried. The rules
  run only when the quality gate ran (passed or failed), never on a day that was not built.
"""

from __future__ import annotations

import functools

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task

from openrouter_spend import dag_tasks as steps
from openrouter_spend.dag_tasks import WAREHOUSE
from openrouter_spend.timetable import UsageDayTimetable

# A task's result is one XCom. TaskFlow would unroll a `-> dict` result into one XCom per key as well, each an
# API call and a metadata-database write per task, and nothing reads them.
step = functools.partial(task, multiple_outputs=False)


@dag(
    schedule=UsageDayTimetable(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["openrouter", "spend", "extract"],
    default_args=steps.default_args(),
)
def openrouter_spend_daily():
    prepare_warehouse = step(**WAREHOUSE)(steps.prepare_warehouse)
    check_activity_window = step(steps.check_activity_window)
    extract_snapshots = step(steps.extract_snapshots)
    extract_key_activity = step(map_index_template="{{ task.op_kwargs['key_hashes'] | length }} keys")(
        steps.extract_key_activity)
    reconcile_key_activity = step(trigger_rule="none_failed")(steps.reconcile_key_activity)
    ingest_request_logs = step(**WAREHOUSE)(steps.ingest_request_logs)
    enrich_generations = step(steps.enrich_generations)
    load_generations = step(trigger_rule="all_done", **WAREHOUSE)(steps.load_generations)
    load_raw = step(trigger_rule="none_failed", **WAREHOUSE)(steps.load_raw)
    build_staging = step(**WAREHOUSE)(steps.build_staging)
    build_marts = step(**WAREHOUSE)(steps.build_marts)
    validate_warehouse = step(**WAREHOUSE)(steps.validate_warehouse)
    # one_done: after the gate passed or failed (to block decision alerts), skipped when the gate never ran.
    evaluate_rules = step(trigger_rule="one_done", **WAREHOUSE)(steps.evaluate_rules)
    emit_alerts = step(**WAREHOUSE)(steps.emit_alerts)
    publish_warehouse = step(**WAREHOUSE)(steps.publish_warehouse)
    write_digest = step(**WAREHOUSE)(steps.write_digest)
    export_focus = step(**WAREHOUSE)(steps.export_focus)
    # On the warehouse worker, which holds the digest folder; a failed e-mail retries without re-rendering.
    mail_digest = step(**WAREHOUSE)(steps.mail_digest)
    # none_failed: a day with no alert to send (emit_alerts skipped) is summarised; a failed delivery is not.
    summarize_day = step(trigger_rule="none_failed", **WAREHOUSE)(steps.summarize_day)

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
