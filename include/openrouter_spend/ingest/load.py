"""Load one day's committed landing batches into DuckDB `raw.*`, replacing the partition atomically."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from openrouter_spend.ingest.errors import MalformedResponseError
from openrouter_spend.ingest.landing import LandedResponse, batch_notes, committed_manifests, latest_responses
from openrouter_spend.ingest.responses import data_of, describe_request, parse_json
from openrouter_spend.warehouse.connection import transaction

log = logging.getLogger(__name__)

RAW_TABLES = ("credits", "workspaces", "keys", "models", "model_endpoints", "providers", "activity")
_COMMON = ["partition_date", "run_id", "fetched_at", "landing_file", "request_params"]
COLUMNS: dict[str, list[str]] = {
    "credits": _COMMON + ["total_credits", "total_usage", "payload"],
    "workspaces": _COMMON + ["workspace_id", "payload"],
    "keys": _COMMON + ["requested_workspace_id", "page_offset", "key_hash", "usage_daily", "is_latest_fetch",
             "payload"],
    "models": _COMMON + ["model_id", "payload"],
    "model_endpoints": _COMMON + ["model_id", "provider_name", "payload"],
    "providers": _COMMON + ["provider_name", "payload"],
    "activity": _COMMON + ["scope", "api_key_hash", "payload"],
}
# Test hook: a file path; the load creates it between the partition delete and the insert, then waits,
# so a test can kill the process mid-transaction and prove that nothing partial becomes visible.
_PAUSE_ENV = "OPENROUTER_SPEND_TEST_PAUSE_MID_LOAD"


class LandingDataError(ValueError):
    """A landed response cannot be loaded; the message names the file and the field."""


@dataclass
class LoadResult:
    """What a partition load did."""

    partition_date: date
    run_id: str
    status: str
    row_counts: dict[str, int] = field(default_factory=dict)
    files: int = 0
    gaps: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"partition_date": self.partition_date.isoformat(), "run_id": self.run_id,
                "status": self.status, "row_counts": self.row_counts, "files": self.files, "gaps": self.gaps}


def _require(item: Any, name: str, source: str, index: int, kinds: tuple[type, ...]) -> Any:
    if not isinstance(item, dict):
        raise LandingDataError(f"{source}: data[{index}] is not a JSON object")
    if name not in item or item[name] is None:
        raise LandingDataError(f"{source}: data[{index}] has no '{name}'")
    value = item[name]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise LandingDataError(
            f"{source}: data[{index}].{name} should be {'/'.join(k.__name__ for k in kinds)},"
            f" got {type(value).__name__} {value!r:.40}"
        )
    return value


def _optional_number(item: dict, name: str, source: str, index: int) -> int | float | None:
    """The item's `name` when it is a number, None when absent or null; LandingDataError naming it otherwise."""
    value = item.get(name)
    if value is not None and not isinstance(value, _NUMBER):
        raise LandingDataError(f"{source}: data[{index}].{name} should be a number")
    return value


_NUMBER = (int, float)
# Fields the typed staging views depend on; a missing one is a broken response, not a quiet NULL.
_ACTIVITY_REQUIRED = {"date": (str,), "model": (str,), "model_permaslug": (str,), "endpoint_id": (str,),
                      "provider_name": (str,), "usage": _NUMBER, "requests": _NUMBER}
_ACTIVITY_NUMERIC_OPTIONAL = ("byok_usage_inference", "prompt_tokens", "completion_tokens",
                              "reasoning_tokens", "cached_tokens", "byok_requests")


_MODEL_ENDPOINTS = re.compile(r"/models/[^/]+/[^/]+/endpoints")
_ENDPOINT_PRICES_REQUIRED = ("prompt", "completion")
_ENDPOINT_PRICES_OPTIONAL = ("request", "input_cache_read", "input_cache_write")
_ENDPOINT_UPTIMES = ("uptime_last_5m", "uptime_last_30m", "uptime_last_1d")


def _price(value: Any) -> bool:
    """A price as the API writes it: a decimal string (a number is accepted too)."""
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _model_endpoint_rows(data: dict, common: dict, source: str) -> list[dict]:
    """One row per provider of a /models/{id}/endpoints answer; prices and uptimes checked for staging."""
    model_id = data.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise LandingDataError(f"{source}: data.id should be the model id (a string), got {model_id!r:.40}")
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list):
        raise LandingDataError(f"{source}: data.endpoints should be a list, got {type(endpoints).__name__}")
    rows = []
    for index, item in enumerate(endpoints):
        where = f"{source}: data.endpoints[{index}]"
        if not isinstance(item, dict):
            raise LandingDataError(f"{where} is not a JSON object")
        if not isinstance(item.get("provider_name"), str) or not item["provider_name"]:
            raise LandingDataError(f"{where}.provider_name should be a string, got {item.get('provider_name')!r:.40}")
        pricing = item.get("pricing")
        if not isinstance(pricing, dict):
            raise LandingDataError(f"{where}.pricing should be an object, got {type(pricing).__name__}")
        for name in (*_ENDPOINT_PRICES_REQUIRED, *_ENDPOINT_PRICES_OPTIONAL):
            if (name in _ENDPOINT_PRICES_REQUIRED or pricing.get(name) is not None) and not _price(pricing.get(name)):
                raise LandingDataError(
                    f"{where}.pricing.{name} should be a price in USD (a decimal string), got {pricing.get(name)!r:.40}"
                )
        for name in _ENDPOINT_UPTIMES:
            value = item.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, _NUMBER)):
                raise LandingDataError(f"{where}.{name} should be a percentage (a number), got {item[name]!r:.40}")
        rows.append({**common, "model_id": model_id, "provider_name": item["provider_name"],
                     "payload": json.dumps(item)})
    return rows


def _rows_for(response: LandedResponse, partition_date: date, run_id: str) -> tuple[str, list[dict]]:
    """Raw-table rows for one landed response, validated enough to make staging types safe."""
    source = f"{response.path} ({describe_request(response.endpoint, response.params)})"
    try:
        payload = parse_json(response.read_body(), source)
    except MalformedResponseError as exc:
        raise LandingDataError(str(exc)) from None
    common = {"partition_date": partition_date, "run_id": run_id, "fetched_at": response.fetched_at,
              "landing_file": str(response.path), "request_params": json.dumps(response.params, sort_keys=True)}
    endpoint = response.endpoint
    try:
        if endpoint == "/credits":
            data = data_of(payload, source, expect=dict)
            return "credits", [{**common, "payload": json.dumps(data),
                                "total_credits": float(_require(data, "total_credits", source, 0, _NUMBER)),
                                "total_usage": float(_require(data, "total_usage", source, 0, _NUMBER))}]
        if _MODEL_ENDPOINTS.fullmatch(endpoint):
            return "model_endpoints", _model_endpoint_rows(data_of(payload, source, expect=dict), common, source)
        items = data_of(payload, source, expect=list)
    except MalformedResponseError as exc:
        raise LandingDataError(str(exc)) from None
    rows = []
    for index, item in enumerate(items):
        row = dict(common, payload=json.dumps(item))
        if endpoint == "/workspaces":
            row["workspace_id"] = _require(item, "id", source, index, (str,))
        elif endpoint == "/keys":
            row["key_hash"] = _require(item, "hash", source, index, (str,))
            row["requested_workspace_id"] = response.params.get("workspace_id")
            row["page_offset"] = int(response.params.get("offset", 0))
            # Typed beside the JSON so the daily credit balance sums it without parsing every snapshot.
            usage_daily = _optional_number(item, "usage_daily", source, index)
            row["usage_daily"] = None if usage_daily is None else float(usage_daily)
        elif endpoint == "/models":
            row["model_id"] = _require(item, "id", source, index, (str,))
        elif endpoint == "/providers":
            row["provider_name"] = _require(item, "name", source, index, (str,))
        elif endpoint == "/activity":
            for name, kinds in _ACTIVITY_REQUIRED.items():
                _require(item, name, source, index, kinds)
            for name in _ACTIVITY_NUMERIC_OPTIONAL:
                _optional_number(item, name, source, index)
            if item["date"][:10] != partition_date.isoformat():
                raise LandingDataError(
                    f"{source}: data[{index}].date is {item['date']!r}, outside partition {partition_date}"
                )
            row["api_key_hash"] = response.params.get("api_key_hash")
            row["scope"] = "key" if row["api_key_hash"] else "account"
        else:
            raise LandingDataError(f"{source}: no raw table for endpoint {endpoint}")
        rows.append(row)
    table = {"/workspaces": "workspaces", "/keys": "keys", "/models": "models", "/providers": "providers",
             "/activity": "activity"}[endpoint]
    return table, rows


def flag_newest_fetches(rows: list[dict]) -> None:
    """Mark which of one partition's /keys rows is its key's newest fetch (`is_latest_fetch`)."""
    # The rule migration 017 backfilled with: the latest fetched_at, and of equal ones the row loaded first.
    # A load replaces the partition's rows whole, so the flag set here stays true until the next load.
    newest: dict[str, dict] = {}
    for row in rows:
        best = newest.get(row["key_hash"])
        if best is None or row["fetched_at"] > best["fetched_at"]:
            newest[row["key_hash"]] = row
    chosen = {id(row) for row in newest.values()}
    for row in rows:
        row["is_latest_fetch"] = id(row) in chosen


def load_partition(con, landing_root: Path, partition_date: date, run_id: str,
                   on_parsed: Callable[[], None] | None = None) -> LoadResult:
    """Replace every raw table's partition with the run's landed data, all or nothing."""
    import pandas as pd

    manifests = committed_manifests(landing_root, partition_date, run_id)
    notes = batch_notes(manifests)
    gaps = notes.get("gaps", [])
    responses = latest_responses(manifests)
    rows: dict[str, list[dict]] = defaultdict(list)
    lineage = []
    for response in responses:
        table, table_rows = _rows_for(response, partition_date, run_id)
        rows[table].extend(table_rows)
        lineage.append({"partition_date": partition_date, "run_id": run_id, "batch": response.batch,
                        "landing_file": str(response.path), "endpoint": response.endpoint,
                        "request_params": json.dumps(response.params, sort_keys=True),
                        "fetched_at": response.fetched_at, "sha256": response.sha256,
                        "item_count": len(table_rows)})
    if not manifests:
        raise LandingDataError(
            f"no committed landing batches for {partition_date} run {run_id} under {landing_root}"
        )
    if on_parsed:
        on_parsed()
    counts = {table: len(rows.get(table, [])) for table in RAW_TABLES}
    flag_newest_fetches(rows.get("keys", []))
    if gaps and not responses:
        return _record_gap(con, partition_date, run_id, gaps, notes, counts)
    with transaction(con):
        for table in RAW_TABLES:
            con.execute(f"delete from raw.{table} where partition_date = ?", [partition_date])
        con.execute("delete from meta.landed_files where partition_date = ?", [partition_date])
        if os.environ.get(_PAUSE_ENV):
            Path(os.environ[_PAUSE_ENV]).touch()
            time.sleep(120)
        for table in RAW_TABLES:
            if rows.get(table):
                frame = pd.DataFrame(rows[table], columns=COLUMNS[table])
                con.register("incoming_rows", frame)
                con.execute(f"insert into raw.{table} by name select * from incoming_rows")
                con.unregister("incoming_rows")
        if lineage:
            con.register("incoming_lineage", pd.DataFrame(lineage))
            con.execute("insert into meta.landed_files by name select * from incoming_lineage")
            con.unregister("incoming_lineage")
        con.execute("delete from meta.extraction_gaps where partition_date = ?", [partition_date])
        for gap in gaps:
            con.execute(
                "insert into meta.extraction_gaps (partition_date, endpoint, reason, run_id) values (?, ?, ?, ?)",
                [partition_date, gap["endpoint"], gap["reason"], run_id],
            )
        con.execute(
            "insert into meta.load_runs (partition_date, run_id, status, row_counts, notes) values (?, ?, ?, ?, ?)",
            [partition_date, run_id, "loaded", json.dumps(counts), json.dumps(notes, sort_keys=True)],
        )
    log.info("loaded %s run %s: %s", partition_date, run_id, counts)
    return LoadResult(partition_date, run_id, "loaded", counts, len(lineage), gaps)


def _record_gap(con, partition_date: date, run_id: str, gaps: list[dict], notes: dict,
                counts: dict[str, int]) -> LoadResult:
    """A day the API no longer serves: keep whatever an earlier run stored, else record a permanent gap."""
    already_loaded = con.execute(
        "select count(*) from meta.load_runs where partition_date = ? and status = 'loaded'", [partition_date]
    ).fetchone()[0]
    with transaction(con):
        if already_loaded:
            log.warning("%s is outside the API window now; keeping the data loaded by an earlier run",
                        partition_date)
            notes = {**notes, "kept_earlier_load": True}
        else:
            for gap in gaps:
                con.execute(
                    "insert or replace into meta.extraction_gaps (partition_date, endpoint, reason, run_id)"
                    " values (?, ?, ?, ?)",
                    [partition_date, gap["endpoint"], gap["reason"], run_id],
                )
        con.execute(
            "insert into meta.load_runs (partition_date, run_id, status, row_counts, notes) values (?, ?, ?, ?, ?)",
            [partition_date, run_id, "gap", json.dumps(counts), json.dumps(notes, sort_keys=True)],
        )
    return LoadResult(partition_date, run_id, "gap", counts, 0, [] if already_loaded else gaps)
