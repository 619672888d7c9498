"""The DAG folder parses cleanly and the daily DAG follows the project's Airflow rules."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
WAREHOUSE_TASKS = {"prepare_warehouse", "load_raw", "build_staging", "build_marts", "validate_warehouse",
                   "ingest_request_logs", "load_generations",
                   "evaluate_rules",
                   "emit_alerts", "publish_warehouse", "write_digest", "export_focus", "mail_digest",
                   "summarize_day"}
HTTP_TASKS = {"check_activity_window", "extract_snapshots", "extract_key_activity", "reconcile_key_activity",
              "enrich_generations"}
# Join points the scheduler settles itself (EmptyOperator): no worker, no pool.
JOIN_TASKS = {"alerts_settled"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), known_pools={"default_pool", "duckdb"})


@pytest.fixture(scope="module")
def daily(dagbag):
    return dagbag.dags["openrouter_spend_daily"]


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "openrouter_spend_daily" in dagbag.dag_ids


def test_every_dag_has_tags_docs_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} has {task.retries} retries"
            assert task.doc_md or task.doc or getattr(task, "python_callable", None).__doc__, task.task_id


def test_daily_window_is_a_real_utc_day(daily):
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.interval import CronDataIntervalTimetable

    timetable = daily.timetable
    assert isinstance(timetable, CronDataIntervalTimetable)
    assert daily.max_active_runs == 1
    assert daily.catchup is False
    utc = pendulum.UTC
    day, next_day = pendulum.datetime(2026, 3, 1, tz=utc), pendulum.datetime(2026, 3, 2, tz=utc)
    # The scheduler's run for 1 March: logical date 1 March 00:00, created after the day ended.
    scheduled = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(day.subtract(days=1), day),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    assert (scheduled.logical_date, scheduled.data_interval, scheduled.run_after) == (
        day, DataInterval(day, next_day), next_day)
    # A manual run with that logical date covers the same day (openrouter-spend run uses it) ...
    assert timetable.infer_manual_data_interval(run_after=day) == DataInterval(day, next_day)
    # ... and one triggered at any other time covers the last complete day.
    assert timetable.infer_manual_data_interval(run_after=next_day.add(hours=9)) == DataInterval(day, next_day)


def test_the_timetable_survives_serialisation_through_its_registered_plugin(daily):
    from airflow.serialization.serialized_objects import DagSerialization

    from openrouter_spend.timetable import UsageDayTimetable

    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(daily))
    assert type(restored.timetable) is UsageDayTimetable
    assert restored.timetable.serialize() == daily.timetable.serialize()


def test_duckdb_tasks_are_serialised_and_http_tasks_never_touch_the_warehouse(daily):
    tasks = {task.task_id: task for task in daily.tasks}
    assert set(tasks) == WAREHOUSE_TASKS | HTTP_TASKS | JOIN_TASKS
    for task_id in WAREHOUSE_TASKS:
        assert tasks[task_id].pool == "duckdb", task_id
        assert tasks[task_id].queue == "warehouse", task_id
    for task_id in HTTP_TASKS:
        assert tasks[task_id].pool != "duckdb", task_id
        assert tasks[task_id].queue != "warehouse", task_id


def test_flow_reads_extract_then_load_then_staging(daily):
    tasks = {task.task_id: task for task in daily.tasks}
    assert tasks["extract_key_activity"].upstream_task_ids == {"extract_snapshots"}
    assert {"extract_snapshots", "extract_key_activity"} <= tasks["reconcile_key_activity"].upstream_task_ids
    assert {"prepare_warehouse", "check_activity_window", "reconcile_key_activity"} <= tasks["load_raw"].upstream_task_ids
    assert tasks["build_staging"].upstream_task_ids == {"load_raw"}
    assert tasks["build_marts"].upstream_task_ids == {"build_staging", "load_generations"}
    assert tasks["enrich_generations"].upstream_task_ids == {"ingest_request_logs"}
    assert tasks["validate_warehouse"].upstream_task_ids == {"build_marts"}
    assert tasks["evaluate_rules"].upstream_task_ids == {"validate_warehouse"}
    # The rules run after the gate passed or failed, never when it did not run (nothing was built).
    assert tasks["evaluate_rules"].trigger_rule == "one_done"
    assert tasks["emit_alerts"].upstream_task_ids == {"evaluate_rules"}
    # Deliveries settle (sent, failed or skipped) before the analysts' copy is taken.
    assert tasks["alerts_settled"].upstream_task_ids == {"emit_alerts"}
    assert tasks["alerts_settled"].trigger_rule == "all_done"
    assert tasks["publish_warehouse"].upstream_task_ids == {"validate_warehouse", "evaluate_rules", "alerts_settled"}
    assert tasks["write_digest"].upstream_task_ids == {"publish_warehouse"}
    assert tasks["export_focus"].upstream_task_ids == {"publish_warehouse"}
    # The e-mail is its own task, so a failed send retries without rendering the digest again.
    assert tasks["mail_digest"].upstream_task_ids == {"write_digest"}
    # A failed delivery fails the run here, after the data was published; a day with nothing to send does not.
    assert tasks["summarize_day"].upstream_task_ids == {"write_digest", "export_focus", "emit_alerts"}
    assert tasks["summarize_day"].trigger_rule == "none_failed"
    assert tasks["load_raw"].trigger_rule == "none_failed"


def test_dag_file_stays_thin_and_imports_nothing_heavy():
    source = (DAGS / "openrouter_spend_daily.py").read_text()
    assert len(source.splitlines()) <= 130
    for heavy in ("import duckdb", "import pandas", "import requests", "great_expectations"):
        assert heavy not in source.split('"""', 2)[-1].split("def openrouter_spend_daily")[0], heavy


def test_permanent_errors_fail_at_once_and_everything_else_is_retried(daily):
    from airflow.sdk import RetryAction

    from openrouter_spend.config.yamlnode import ConfigError
    from openrouter_spend.ingest.errors import (
        AuthenticationError,
        PaymentRequiredError,
        PermissionDeniedError,
        RateLimitedError,
        ServerError,
    )
    from openrouter_spend.ingest.load import LandingDataError
    from openrouter_spend.preflight import InvalidDayError
    from openrouter_spend.quality import QualityGateFailed

    permanent = [AuthenticationError("401"), PaymentRequiredError("402"), PermissionDeniedError("403"),
                 InvalidDayError("today"), ConfigError("owners.yaml", "projects", "team", "missing"),
                 LandingDataError("bad file"), QualityGateFailed("1 expectation failed")]
    transient = [RateLimitedError("429"), ServerError("502"), TimeoutError("slow"), RuntimeError("anything else")]
    for task in daily.tasks:
        for error in permanent:
            assert task.retry_policy.evaluate(error, 1, task.retries + 1).action == RetryAction.FAIL, (task, error)
        for error in transient:
            assert task.retry_policy.evaluate(error, 1, task.retries + 1).action == RetryAction.DEFAULT, (task, error)


def test_every_task_pushes_its_result_as_one_xcom(daily):
    # A `-> dict` result would otherwise be unrolled into one XCom per key (an API call and a write each).
    assert [task.task_id for task in daily.tasks if getattr(task, "multiple_outputs", False)] == []
