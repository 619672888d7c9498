"""Pipeline-failure notifications attached to every task through the DAG's default_args."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from openrouter_spend import settings

FAILURES_FILE = "task_failures.jsonl"


def record_task_failure(context) -> None:
    """on_failure_callback: append the failed task and its error to $AIRFLOW_HOME/task_failures.jsonl."""
    home = Path(os.environ.get("AIRFLOW_HOME") or settings.paths().airflow_home)
    ti = context.get("ti") or context.get("task_instance")
    exception = context.get("exception")
    entry = {
        "dag_id": getattr(ti, "dag_id", None),
        "run_id": context.get("run_id") or getattr(ti, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
        "error_type": type(exception).__name__ if exception else None,
        "error": str(exception) if exception else "task failed (no exception recorded)",
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    home.mkdir(parents=True, exist_ok=True)
    with open(home / FAILURES_FILE, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
