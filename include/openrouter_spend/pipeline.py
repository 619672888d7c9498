"""Bodies of the daily DAG's tasks: plain functions of (day, run_id) so they test without Airflow.

HTTP steps write only landing batches; warehouse steps open DuckDB. The DAG file wires them together.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import date
from typing import Any

from openrouter_spend import settings
from openrouter_spend.client import PERMANENT, client_from_environment
from openrouter_spend.extract import (
    ActivityTotals,
    chunked,
    fetch_account_activity,
    fetch_key_activity,
    fetch_snapshots,
    plan_key_activity,
    reconcile_key_activity,
)
from openrouter_spend.landing import LandingBatch
from openrouter_spend.load import LandingDataError, load_partition
from openrouter_spend.warehouse import build_staging, connect, migrate, table_counts

log = logging.getLogger(__name__)


class PermanentTaskError(Exception):
    """An error no retry can fix (bad credentials, missing configuration, an invalid config file)."""


@contextmanager
def _landing_batch(day: date, run_id: str, name: str):
    """A landing batch that is committed only when the block succeeds."""
    batch = LandingBatch(settings.api_landing_root(), day, run_id, name)
    yield batch
    batch.commit()


@contextmanager
def _client():
    """A configured client; permanent API errors surface as PermanentTaskError."""
    try:
        with client_from_environment() as client:
            yield client
    except PERMANENT as exc:
        raise PermanentTaskError(str(exc)) from exc


def prepare_warehouse() -> list[int]:
    """Apply pending schema migrations."""
    with connect() as con:
        return migrate(con)


def check_activity_window(day: date, run_id: str) -> dict[str, Any]:
    """Land the account-level activity of the day, or record that the day left the API window."""
    with _client() as client, _landing_batch(day, run_id, "account_activity") as batch:
        check = fetch_account_activity(client, batch, day)
    return {"day": day.isoformat(), "in_window": check.in_window, "reason": check.reason,
            "account": check.totals.as_dict()}


def extract_snapshots(day: date, run_id: str) -> dict[str, Any]:
    """Land credits, workspaces, keys, models and providers; plan the per-key activity calls."""
    extraction = settings.ExtractionSettings.from_env()
    with _client() as client, _landing_batch(day, run_id, "snapshots") as batch:
        keys = fetch_snapshots(client, batch)
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


def extract_key_activity(day: date, run_id: str, key_hashes: list[str], chunk_name: str) -> dict[str, Any]:
    """Land per-key activity for one chunk of keys."""
    extraction = settings.ExtractionSettings.from_env()
    with _client() as client, _landing_batch(day, run_id, f"key_activity_{chunk_name}") as batch:
        totals = fetch_key_activity(client, batch, day, key_hashes, extraction.key_activity_concurrency)
        batch.notes[f"key_activity_{chunk_name}"] = totals.as_dict()
    return totals.as_dict()


def reconcile_keys(day: date, run_id: str, account: dict, chunk_totals: list[dict],
                   skipped: list[str]) -> dict[str, Any]:
    """Make sure per-key activity accounts for the account total; fetch skipped keys if it does not."""
    extraction = settings.ExtractionSettings.from_env()
    fetched = ActivityTotals()
    for totals in chunk_totals:
        fetched = fetched + ActivityTotals(**totals)
    with _client() as client, _landing_batch(day, run_id, "key_reconciliation") as batch:
        return reconcile_key_activity(client, batch, day, ActivityTotals(**account), fetched, skipped,
                                      extraction.key_activity_concurrency)


def load_raw(day: date, run_id: str) -> dict[str, Any]:
    """Replace the day's raw partition with the run's committed landing batches."""
    with connect() as con:
        migrate(con)
        try:
            return load_partition(con, settings.api_landing_root(), day, run_id).as_dict()
        except LandingDataError as exc:
            # A retry would re-read the same landed files; the run must re-extract instead.
            raise PermanentTaskError(str(exc)) from exc


def refresh_staging() -> list[str]:
    """(Re)create the staging views."""
    with connect() as con:
        return build_staging(con)


def build_marts(day: date) -> dict[str, int]:
    """Validate the configuration and rebuild the mart partitions the day (and late re-pulls) touch."""
    from openrouter_spend.config import ConfigError
    from openrouter_spend.marts import build_marts as build

    with connect() as con:
        try:
            return build(con, [day])
        except ConfigError as exc:
            raise PermanentTaskError(str(exc)) from exc


def publish_warehouse() -> str:
    """Replace the analysts' read-only copy of the warehouse."""
    from openrouter_spend.marts import publish_warehouse as publish

    return str(publish())


def summarize_day(day: date) -> dict[str, Any]:
    """Row counts and the day's spend, for the task log and the CLI summary."""
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

