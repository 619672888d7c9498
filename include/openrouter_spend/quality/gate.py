"""The data-quality gate (write–audit–publish): one day of the warehouse checked before anything is published.

`validate_day(day, run_id)` runs after the marts are built. It checks the raw, staging and mart layers of the
day (schema and types, not-null keys, uniqueness at each declared grain, non-negative money and volumes,
shares in [0, 1], accepted values, row counts against recent history), reconciles the sources against each
other and checks that every expected endpoint landed and no day is missing (see .datasets, .reconcile).

Every check is computed in DuckDB (.metrics: one aggregate query per table, so no table is read into Python);
Great Expectations then judges every check's figure against its bounds in one batch (one row per check,
named by check id), on an ephemeral context and suite built once per process, and writes the Data
Docs to $OPENROUTER_SPEND_HOME/quality/docs. Results go to marts.fct_quality_results (one row per check, with
GX's expectation type and counts) and marts.fct_quality_runs; any failed check of severity error then raises
QualityGateFailed with a readable summary. Great Expectations and pandas are imported inside functions,
never when the DAG is parsed.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.quality import docs, metrics
from openrouter_spend.quality.checks import Check, Dataset
from openrouter_spend.quality.config import QUALITY_FILE, QualityConfig
from openrouter_spend.quality.datasets import build_datasets

log = logging.getLogger(__name__)

DOCS_SITE = "quality"
# Data Docs pages sit at validations/quality/gate/<usage day>/<run time>/ (prune_outputs relies on that layout).
SUITE = "quality.gate"
FIGURE_COLUMNS = ["dataset", "check_id", "expectation_type", "observed", "lowest_allowed", "highest_allowed"]


class QualityGateFailed(Exception):
    """The day failed the data-quality gate; `summary` names every failed expectation (results are recorded)."""

    def __init__(self, summary: str, failed: list[dict] | None = None):
        super().__init__(summary)
        self.summary = summary
        self.failed = failed or []


@contextmanager
def _quiet_gx() -> Iterator[None]:
    gx_log = logging.getLogger("great_expectations")
    level = gx_log.level
    gx_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        gx_log.setLevel(level)


def _safe_json(value: Any) -> str | None:
    if value is None:
        return None

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(json.loads(json.dumps(value, default=str))))


def _describe_failure(check: Check, dataset: Dataset, result: dict, exception: str | None) -> str:
    if exception:
        return f"{check.description}: could not be evaluated ({exception})"
    if check.explain is not None:
        try:
            return check.explain(dataset.frame)
        except Exception as exc:  # an explanation must never hide the failure itself
            log.warning("could not explain %s: %s", check.check_id, exc)
    if "observed_value" in result and "unexpected_count" not in result:
        bounds = {k: v for k, v in check.kwargs.items() if k in ("min_value", "max_value", "value")}
        return f"{check.description}: observed {result['observed_value']!r} (expected {bounds})"
    count, total = result.get("unexpected_count"), result.get("element_count")
    sample = result.get("partial_unexpected_index_list") or result.get("partial_unexpected_list") or []
    return f"{check.description}: {count} of {total} row(s) break it, e.g. {_safe_json(sample[:3])}"


@dataclass
class _GxSession:
    """The process's ephemeral GX context for one Data Docs folder, with the gate's suite (built once)."""

    context: Any
    definition: Any
    docs: Any
    docs_built: bool = False


_SESSIONS: dict[str, _GxSession] = {}


def _gx_session(docs_dir: Path) -> _GxSession:
    """The GX context writing Data Docs to `docs_dir`, created (and GX imported) on the process's first run."""
    session = _SESSIONS.get(str(docs_dir))
    if session is None:
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.render.renderer.site_builder import SiteBuilder

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # One site builder per process: it holds the compiled page templates, which GX would otherwise
        # compile again on every build.
        docs = SiteBuilder(data_context=context, site_name=DOCS_SITE,
                           site_index_builder={"class_name": "DefaultSiteIndexBuilder"},
                           store_backend={"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)})
        batch = (context.data_sources.add_pandas(name="warehouse").add_dataframe_asset(name="checks")
                 .add_batch_definition_whole_dataframe("day"))
        suite = context.suites.add(gx.ExpectationSuite(name=SUITE, expectations=[
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="observed", column_B="lowest_allowed", or_equal=True, ignore_row_if="either_value_is_missing",
                description="every check observes at least its lower bound (the smallest row count allowed; "
                            "0 rows breaking it)"),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="highest_allowed", column_B="observed", or_equal=True, ignore_row_if="either_value_is_missing",
                description="every check observes at most its upper bound (the largest row count allowed; "
                            "0 rows breaking it)"),
        ]))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE, data=batch, suite=suite))
        session = _SESSIONS[str(docs_dir)] = _GxSession(context, definition, docs)
    return session


def _judge_with_gx(figures: list[dict], run_id: str, validated_at: datetime, docs_dir: Path,
                   run_name: str | None = None) -> tuple[set[str], str | None]:
    """Validate the figures (one row per check) with GX and build the Data Docs of the run.

    The run is named `run_name` in Data Docs (the usage day, so its pages are found by day), else `run_id`.

    Returns the check ids GX found outside their bounds, and the exception GX raised, if any.
    """
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier

    session = _gx_session(docs_dir)
    frame = pd.DataFrame(figures, columns=FIGURE_COLUMNS).astype(
        {"observed": "float64", "lowest_allowed": "float64", "highest_allowed": "float64"})
    outcome = session.definition.run(
        batch_parameters={"dataframe": frame},
        run_id=RunIdentifier(run_name=run_name or run_id, run_time=validated_at),
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["check_id"]})
    failed: set[str] = set()
    crashed = None
    for result in outcome.results:
        if result.exception_info and result.exception_info.get("raised_exception"):
            crashed = result.exception_info.get("exception_message") or "exception"
        failed |= {entry["check_id"] for entry in (result.result or {}).get("unexpected_index_list") or []}
    store = session.context.validation_results_store
    results = store.list_keys()
    # The suite's page once per process; after that only the run's validation page. GX's own index is not
    # built: building it deletes every page whose result is no longer in the store (we empty the store below),
    # and quality/docs.py writes the index by usage day instead.
    session.docs.build(resource_identifiers=results if session.docs_built else None, build_index=False)
    session.docs_built = True
    for key in results:  # written; the next run renders only its own
        store.remove_key(key)
    return failed, crashed


def run_datasets(datasets: list[Dataset], run_id: str, validated_at: datetime, docs_dir: Path,
                 config: QualityConfig, con=None, *, run_name: str | None = None) -> list[dict]:
    """Compute every check in DuckDB, judge the figures with GX in one batch, build Data Docs; a row per check."""
    import duckdb

    started = time.monotonic()
    own = con is None
    con = duckdb.connect(":memory:") if own else con
    try:
        measured = {}
        for dataset in datasets:
            ids = [check.check_id for check in dataset.checks]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{dataset.name} declares a check id twice: {sorted(i for i in ids if ids.count(i) > 1)}")
            measured[dataset.name] = metrics.measure(con, dataset)
    finally:
        if own:
            con.close()
    figures = [{"dataset": dataset.name, "check_id": check.check_id, "expectation_type": check.expectation,
                "observed": figure.observed, "lowest_allowed": figure.lowest, "highest_allowed": figure.highest}
               for dataset in datasets for check in dataset.checks
               if (figure := measured[dataset.name].get(check.check_id)) is not None]
    measured_at = time.monotonic()
    with _quiet_gx():
        failed, crashed = _judge_with_gx(figures, run_id, validated_at, docs_dir, run_name)
    rows = [_result_row(check, dataset, measured[dataset.name].get(check.check_id), crashed,
                        check.check_id in failed, run_id, validated_at, config)
            for dataset in datasets for check in dataset.checks]
    log.info("computed %d checks on %d datasets in %.1fs; GX and Data Docs in %.1fs", len(rows), len(datasets),
             measured_at - started, time.monotonic() - measured_at)
    return rows


def _result_row(check: Check, dataset: Dataset, figure: metrics.Measurement | None, crashed: str | None,
                out_of_bounds: bool, run_id: str, validated_at: datetime, config: QualityConfig) -> dict:
    details = figure.details if figure is not None else {}
    missing = [column for column in metrics.checked_columns(check) if column not in dataset.column_names]
    exception = None
    if missing:
        exception = f"no column {', '.join(missing)} in {dataset.name}"
    elif figure is None:
        exception = "no result returned"
    elif crashed:
        exception = crashed
    success = not exception and not out_of_bounds
    observed = details.get("observed_value")
    sample = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list")
    return {
        "run_id": run_id,
        "check_id": check.check_id,
        "validated_at": validated_at,
        "suite": dataset.suite,
        "dataset": dataset.name,
        "expectation_type": _expectation_type(check.expectation),
        "column_name": check.column,
        "description": check.description,
        "severity": config.severity_of(check.check_id, check.severity),
        "success": success,
        "element_count": details.get("element_count"),
        "unexpected_count": details.get("unexpected_count"),
        "unexpected_percent": details.get("unexpected_percent"),
        "observed_value": _safe_json(observed) if observed is not None else None,
        "unexpected_sample": _safe_json(sample[:5]) if sample else None,
        "expectation_kwargs": _safe_json({k: v for k, v in check.kwargs.items() if k != "value_set"}
                                         | ({"value_set_size": len(check.kwargs["value_set"])}
                                            if "value_set" in check.kwargs else {})),
        "message": None if success else _describe_failure(check, dataset, details, exception),
        "compared_values": check.compared_values,
        "skip_reason": check.skip_reason,
    }


def _expectation_type(class_name: str) -> str:
    """The expectation type GX records for an expectation class (ExpectTableRowCountToEqual -> expect_table_...)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


# ----- recording and the gate ---------------------------------------------------------------------------


def summarize(day: date, run_id: str, rows: list[dict], docs_path: Path | None) -> str:
    """A readable summary naming every failed expectation (errors first, then warnings)."""
    errors = [r for r in rows if not r["success"] and r["severity"] == "error"]
    warnings = [r for r in rows if not r["success"] and r["severity"] == "warning"]
    if errors:
        lines = [f"Data-quality gate FAILED for {day} (run {run_id}): {len(errors)} of {len(rows)} expectations "
                 "failed; nothing is published for this day."]
        lines += [f"- [{r['suite']}] {r['check_id']}: {r['message']}" for r in errors]
    else:
        lines = [f"Data-quality gate passed for {day} (run {run_id}): {len(rows)} expectations held"
                 + (f", {len(warnings)} warning(s)." if warnings else ".")]
    if warnings:
        lines.append("Warnings (not blocking):")
        lines += [f"- [{r['suite']}] {r['check_id']}: {r['message']}" for r in warnings]
    if docs_path is not None:
        # Relative to the pipeline's home, so the line means the same in an e-mail, Slack and a log.
        lines.append(f"Data Docs: quality/docs/index.html#{docs.day_anchor(day)} (in OPENROUTER_SPEND_HOME)")
    return "\n".join(lines)


def _record(con, day: date, run_id: str, rows: list[dict], run_row: dict) -> None:
    import pandas as pd

    results = pd.DataFrame([{**row, "usage_date": day} for row in rows])
    con.execute("begin transaction")
    try:
        con.execute("delete from marts.fct_quality_results where run_id = ? and usage_date = ?", [run_id, day])
        con.execute("delete from marts.fct_quality_runs where run_id = ? and usage_date = ?", [run_id, day])
        if len(results):
            con.register("quality_results", results)
            con.execute("insert into marts.fct_quality_results by name select * from quality_results")
            con.unregister("quality_results")
        columns = list(run_row)
        con.execute(f"insert into marts.fct_quality_runs ({', '.join(columns)}) values "
                    f"({', '.join('?' for _ in columns)})", [run_row[c] for c in columns])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def prune_outputs(quality_dir: Path, keep_runs: int) -> int:
    """Keep the newest validation page of each day, and the pages and result files of the newest `keep_runs` days
    (runs, for result files); returns paths removed."""
    import shutil

    removed = 0
    # One entry per usage day: a day validated again keeps only its newest validation page.
    for day_folder in (quality_dir / "docs" / "validations").glob("*/*/*"):
        runs = sorted(folder for folder in day_folder.iterdir() if folder.is_dir()) if day_folder.is_dir() else []
        for older in runs[:-1]:
            shutil.rmtree(older)
            removed += 1
    page_folders: dict[str, list[Path]] = {}
    for folder in (quality_dir / "docs" / "validations").glob("*/*/*"):
        if folder.is_dir():
            page_folders.setdefault(folder.name, []).append(folder)
    result_files = {str(path): [path] for path in (quality_dir / "results").glob("*/*.json")}
    for runs in (page_folders, result_files):
        newest = sorted(runs, key=lambda run, runs=runs: max(p.stat().st_mtime for p in runs[run]), reverse=True)
        for run in newest[keep_runs:]:
            for path in runs[run]:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
    return removed


def _results_path(day: date, run_id: str) -> Path:
    safe_run = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    return settings.paths().quality / "results" / day.isoformat() / f"{safe_run}.json"


def _write_results_file(path: Path, run_row: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"run": run_row, "results": rows}, default=str, indent=1))
    temporary.replace(path)


def _config_failure_row(exc: ConfigError, run_id: str, validated_at: datetime) -> dict:
    return {"run_id": run_id, "check_id": f"config:{QUALITY_FILE}:valid", "validated_at": validated_at,
            "suite": "config", "dataset": QUALITY_FILE, "expectation_type": "config_valid", "column_name": exc.field,
            "description": f"{QUALITY_FILE} is valid", "severity": "error", "success": False,
            "element_count": None, "unexpected_count": None, "unexpected_percent": None, "observed_value": None,
            "unexpected_sample": None, "expectation_kwargs": None, "message": str(exc)}


def _record_crash(con, day: date, run_id: str, validated_at: datetime, exc: Exception, config: QualityConfig) -> None:
    message = f"the quality gate could not run: {type(exc).__name__}: {exc}"
    row = {"run_id": run_id, "check_id": "gate:completed", "validated_at": validated_at, "suite": "gate",
           "dataset": "quality.validate_day", "expectation_type": "gate_completed", "column_name": None,
           "description": "the quality gate ran to completion", "severity": "error", "success": False,
           "element_count": None, "unexpected_count": None, "unexpected_percent": None, "observed_value": None,
           "unexpected_sample": None, "expectation_kwargs": None, "message": message}
    summary = f"Data-quality gate FAILED for {day} (run {run_id}): {message}"
    with suppress(Exception):  # a statement that failed may have left a transaction open
        con.execute("rollback")
    _record(con, day, run_id, [row], {
        "run_id": run_id, "usage_date": day, "validated_at": validated_at, "status": "failed",
        "expectation_count": 1, "failed_count": 1, "warning_count": 0, "summary": summary, "data_docs_path": None,
        "results_path": None, "duration_seconds": None, "config_sha256": config.sha256})


def validate_day(day: date, run_id: str, *, config_dir: Path | None = None) -> dict:
    """Validate the warehouse for `day`, record results and Data Docs; raise QualityGateFailed if any error failed."""
    from openrouter_spend.context import quality_config
    from openrouter_spend.warehouse import connect
    from openrouter_spend.warehouse.memory import within_process_budget

    started = time.monotonic()
    validated_at = datetime.now(UTC)
    docs_dir = settings.paths().quality / "docs"
    config_error: ConfigError | None = None
    try:
        config = quality_config(config_dir)
    except ConfigError as exc:
        config_error, config = exc, QualityConfig()
    with connect() as con:
        if config_error is not None:
            rows = [_config_failure_row(config_error, run_id, validated_at)]
            docs_path = None
        else:
            try:
                # The datasets read a day's million requests on a large organisation's day.
                with within_process_budget(con):
                    datasets = build_datasets(con, day, config, run_id)
                    rows = run_datasets(datasets, run_id, validated_at, docs_dir, config, con,
                                        run_name=day.isoformat())
            except Exception as exc:
                # The day stays marked failed (alerts stay blocked) until a retry validates it.
                _record_crash(con, day, run_id, validated_at, exc, config)
                raise
            docs_path = docs_dir / "index.html"
        failed = [r for r in rows if not r["success"] and r["severity"] == "error"]
        warnings = [r for r in rows if not r["success"] and r["severity"] == "warning"]
        summary = summarize(day, run_id, rows, docs_path)
        run_row = {
            "run_id": run_id, "usage_date": day, "validated_at": validated_at,
            "status": "failed" if failed else "passed", "expectation_count": len(rows),
            "failed_count": len(failed), "warning_count": len(warnings), "summary": summary,
            "data_docs_path": str(docs_path) if docs_path else None,
            "results_path": str(_results_path(day, run_id)),
            "duration_seconds": round(time.monotonic() - started, 3), "config_sha256": config.sha256,
        }
        _write_results_file(Path(run_row["results_path"]), run_row, rows)
        _record(con, day, run_id, rows, run_row)
        prune_outputs(settings.paths().quality, config.data_docs_keep_runs)
        if docs_path is not None:
            docs.make_offline(docs_dir)
            docs.write_index(con, docs_dir)
    outcome = {"day": day.isoformat(), "run_id": run_id, "status": run_row["status"],
               "expectations": len(rows), "failed": len(failed), "warnings": len(warnings),
               "data_docs": run_row["data_docs_path"], "results_file": run_row["results_path"],
               "seconds": run_row["duration_seconds"]}
    if failed:
        log.error("%s", summary)
        error = QualityGateFailed(summary, failed)
        if config_error is not None:
            raise error from config_error
        raise error
    (log.warning if warnings else log.info)("%s", summary)
    return outcome
