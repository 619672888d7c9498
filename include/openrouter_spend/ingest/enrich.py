"""Enrichment through `GET /generation?id=` for logged requests without openrouter_metadata.

Three steps, so the HTTP step never opens DuckDB (one writer at a time, product.md §4):

1. `enrich_plan.plan_enrichment(con, day, run_id)` (warehouse) derives the plan of the run's usage day, and of earlier
   days with ids never queued (late logs) or still pending: each usage day has its own budget of
   `daily_call_budget` ids (a daily rate limit: one day never spends another's), fetched in full when they
   fit (a census), else as a stratified sample (stratum = project × requested model). The plan is a
   function of the day's logged ids and of what was already called, so a rerun of a day re-derives its
   queue. It writes the work list next to the run's landing batches.
2. `enrich_pending(day, run_id)` (HTTP only) calls /generation for the work list with bounded concurrency and
   the client's token bucket (OpenRouterClient honours Retry-After), within the run's wall-time budget and
   with read timeouts that follow the observed latency, landing every 200 body raw before anything parses
   it; 404s (the record is not available yet), errors and ids deferred to a later run (out of time) are
   noted in the batch manifest.
3. `load_enrichment(con, day, run_id)` (warehouse) loads the landed records into raw.generations and updates
   the queue: fetched; still pending after a 404 or a deferral (a later run retries); unavailable once the
   id has 404'd for `give_up_days` days (recorded, never dropped).

`discover_generation_ids(day, run_id)` is the optional, off-by-default discovery of generation ids through
`POST /analytics/query` for applications that log nothing (see its docstring for its API cost).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from time import monotonic
from typing import Annotated, Any

from openrouter_spend.config import settings
from openrouter_spend.context import day_end, day_start
from openrouter_spend.ingest.requests_log import record_change
from openrouter_spend.warehouse.connection import transaction

log = logging.getLogger(__name__)

WORKLIST = "_worklist.json"
GENERATION_ENDPOINT = "/generation"


@dataclass(frozen=True)
class EnrichmentSettings:
    """Knobs of the /generation enrichment; each has an OPENROUTER_SPEND_GENERATION_* override."""

    # Distinct ids called per usage day (a daily rate limit; see plan_enrichment).
    daily_call_budget: Annotated[int, settings.env("GENERATION_CALL_BUDGET", ge=0)] = 1000
    concurrency: Annotated[int, settings.env("GENERATION_CONCURRENCY", ge=1)] = 4
    requests_per_second: Annotated[float, settings.env("GENERATION_RPS", ge=0.01)] = 10.0
    give_up_days: Annotated[int, settings.env("GENERATION_GIVE_UP_DAYS", ge=0)] = 3
    min_sample_per_stratum: Annotated[int, settings.env("GENERATION_MIN_PER_STRATUM", ge=1)] = 2
    discovery_enabled: Annotated[bool, settings.env("ANALYTICS_DISCOVERY")] = False
    # Wall time one run may spend calling /generation; what does not fit waits for the next run.
    time_budget_seconds: Annotated[float, settings.env("GENERATION_TIME_BUDGET", ge=0)] = 600.0
    # The longest a /generation call waits for its answer (shorter once answers show the API is fast).
    read_timeout_seconds: Annotated[float, settings.env("GENERATION_READ_TIMEOUT", ge=0.01)] = 10.0

    @classmethod
    def from_env(cls) -> EnrichmentSettings:
        """Read OPENROUTER_SPEND_GENERATION_* and OPENROUTER_SPEND_ANALYTICS_DISCOVERY."""
        return settings.from_environment(cls)


def generation_landing_root():
    """Where /generation responses are landed: `<landing root>/generations` (apart from the API snapshots)."""
    return settings.landing_root() / "generations"


def worklist_path(day: date, run_id: str):
    """The work list of one run: the generation ids enrich_pending calls."""
    from openrouter_spend.ingest.landing import run_dir

    return run_dir(generation_landing_root(), day, run_id) / WORKLIST


# ----- 2. call /generation (HTTP only) ---------------------------------------------------------------------

def enrich_pending(day: date, run_id: str, enrichment: EnrichmentSettings | None = None, *,
                   client=None) -> dict[str, Any]:
    """Call /generation for the run's work list and land every answer raw; no DuckDB here.

    The run stops calling when its time budget is spent: the ids it did not reach (or whose answer did not
    come in time) stay pending for the next run, and the day publishes with the coverage it got. A call
    waits at most `read_timeout_seconds`, less once the answers so far show the API is fast (ObservedLatency).
    `client` (an OpenRouterClient) replaces the one built from the environment, e.g. to record waits in tests.
    """
    from openrouter_spend.ingest.client import client_from_environment
    from openrouter_spend.ingest.errors import (
        PERMANENT,
        NotFoundError,
        OpenRouterError,
        OutOfTimeError,
        RateLimitedError,
    )
    from openrouter_spend.ingest.landing import LandingBatch, committed_manifests, latest_responses
    from openrouter_spend.ingest.pacing import ObservedLatency

    enrichment = enrichment or EnrichmentSettings.from_env()
    path = worklist_path(day, run_id)
    if not path.exists():
        return {"day": day.isoformat(), "calls": 0, "worklist": None}
    ids = json.loads(path.read_text())["generation_ids"]
    root = generation_landing_root()
    # A retried task does not call again for records an earlier attempt of this run already landed.
    landed = {r.params.get("id") for r in latest_responses(committed_manifests(root, day, run_id))}
    todo = [gid for gid in ids if gid not in landed]
    outcome: dict[str, list[str]] = {"fetched": [], "not_found": [], "deferred": []}
    errors: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    started = monotonic()
    deadline = started + enrichment.time_budget_seconds
    extraction = settings.ExtractionSettings.from_env()
    extraction = replace(extraction, requests_per_second=enrichment.requests_per_second,
                         key_activity_concurrency=enrichment.concurrency,
                         http_timeout_seconds=min(extraction.http_timeout_seconds, enrichment.read_timeout_seconds))
    batch = LandingBatch(root, day, run_id, "generation")

    def fetch(generation_id: str) -> None:
        if stop.is_set() or monotonic() >= deadline:
            with lock:
                outcome["deferred"].append(generation_id)
            return
        try:
            raw = client.request(GENERATION_ENDPOINT, {"id": generation_id}, deadline=deadline)
            batch.land(raw)
            kind = "fetched"
        except OutOfTimeError:
            kind = "deferred"
        except NotFoundError:
            kind = "not_found"
        except RateLimitedError as exc:  # the client already waited as told; leave the rest for later
            stop.set()
            kind = "deferred"
            with lock:
                errors[generation_id] = str(exc)
        except PERMANENT:
            stop.set()
            raise
        except OpenRouterError as exc:
            kind = "error"
            with lock:
                errors[generation_id] = str(exc)
        with lock:
            outcome.setdefault(kind, []).append(generation_id)

    if client is None:
        client = client_from_environment(extraction)
        client.latency = ObservedLatency()
    with client, ThreadPoolExecutor(max_workers=enrichment.concurrency, thread_name_prefix="generation") as pool:
        for future in [pool.submit(fetch, gid) for gid in todo]:
            future.result()
    out_of_time = monotonic() >= deadline and bool(outcome["deferred"])
    batch.notes["generation"] = {
        "worklist": len(ids), "already_landed": len(ids) - len(todo),
        "not_found": sorted(outcome["not_found"]), "deferred": sorted(outcome["deferred"]),
        "errors": dict(sorted(errors.items())), "out_of_time": out_of_time,
        "time_budget_seconds": enrichment.time_budget_seconds,
    }
    batch.commit()
    result = {"day": day.isoformat(), "worklist": len(ids), "calls": len(todo) - len(outcome["deferred"]),
              "fetched": len(outcome["fetched"]), "not_found": len(outcome["not_found"]),
              "errors": len(outcome.get("error", [])), "deferred": len(outcome["deferred"]),
              "already_landed": len(ids) - len(todo), "out_of_time": out_of_time,
              "seconds": round(monotonic() - started, 3)}
    if out_of_time:
        log.warning("generation enrichment for %s ran out of its %gs budget: %d id(s) wait for the next run",
                    day, enrichment.time_budget_seconds, len(outcome["deferred"]))
    log.info("generation enrichment for %s: %s", day, result)
    return result


# ----- 3. load (warehouse) ---------------------------------------------------------------------------------

def load_enrichment(con, day: date, run_id: str, enrichment: EnrichmentSettings | None = None) -> dict[str, Any]:
    """Load the run's landed /generation records into raw.generations and move the queue on (idempotent)."""
    from openrouter_spend.ingest.errors import MalformedResponseError
    from openrouter_spend.ingest.landing import batch_notes, committed_manifests, latest_responses
    from openrouter_spend.ingest.responses import data_of, parse_json

    enrichment = enrichment or EnrichmentSettings.from_env()
    manifests = committed_manifests(generation_landing_root(), day, run_id)
    notes = [m.get("notes", {}).get("generation", {}) for m in manifests]
    merged = batch_notes(manifests).get("generation", {})
    rows, malformed = [], {}
    for response in latest_responses(manifests):
        generation_id = response.params.get("id")
        source = f"{response.path} (GET /generation?id={generation_id})"
        try:
            record = data_of(parse_json(response.read_body(), source), source, expect=dict)
        except (MalformedResponseError, ValueError) as exc:
            malformed[generation_id] = str(exc)
            continue
        rows.append((generation_id, record.get("created_at"), day, run_id, response.fetched_at,
                     str(response.path), response.sha256, json.dumps(record)))
    fetched_ids = [row[0] for row in rows]
    not_found = sorted({gid for note in notes for gid in note.get("not_found", [])} - set(fetched_ids))
    errors = {gid: msg for note in notes for gid, msg in note.get("errors", {}).items()} | malformed
    errors = {gid: msg for gid, msg in errors.items() if gid not in fetched_ids}
    with transaction(con):
        if rows:
            # One statement over the columns as lists (unnest zips them): executemany runs one per row.
            columns = [list(column) for column in zip(*rows, strict=True)]
            con.execute(
                """
                insert or replace into raw.generations
                    (generation_id, usage_date, partition_date, run_id, fetched_at, landing_file, sha256, payload)
                select
                    unnest(cast($1 as varchar[])),
                    cast(timezone('UTC', cast(unnest(cast($2 as varchar[])) as timestamptz)) as date),
                    unnest(cast($3 as date[])), unnest(cast($4 as varchar[])),
                    unnest(cast($5 as timestamptz[])), unnest(cast($6 as varchar[])),
                    unnest(cast($7 as varchar[])), unnest(cast($8 as json[]))
                """,
                columns,
            )
        attempt = "attempts = attempts + case when last_attempt_run_id is distinct from ? then 1 else 0 end"
        con.execute(
            f"update meta.generation_queue set status = 'fetched', {attempt}, last_attempt_on = ?, "
            "last_attempt_run_id = ?, last_http_status = 200, last_error = null, resolved_on = ? "
            "where generation_id in (select unnest(cast(? as varchar[])))",
            [run_id, day, run_id, day, fetched_ids])
        con.execute(
            f"update meta.generation_queue set {attempt}, last_attempt_on = ?, last_attempt_run_id = ?, "
            "last_http_status = 404, last_error = 'not available yet (404)', "
            "status = case when ? - usage_date >= ? then 'unavailable' else 'pending' end, "
            "resolved_on = case when ? - usage_date >= ? then ? end "
            "where generation_id in (select unnest(cast(? as varchar[]))) and status <> 'fetched'",
            [run_id, day, run_id, day, enrichment.give_up_days, day, enrichment.give_up_days, day, not_found])
        deferred = sorted(set(merged.get("deferred", [])) - set(fetched_ids) - set(not_found) - set(errors))
        if deferred:
            con.execute(
                "update meta.generation_queue set last_error = 'deferred to a later run (the run''s time budget "
                "or a rate limit stopped the calls)' where generation_id in (select unnest(cast(? as varchar[]))) "
                "and status = 'pending'", [deferred])
        for generation_id, message in sorted(errors.items()):
            con.execute(
                f"update meta.generation_queue set {attempt}, last_attempt_on = ?, last_attempt_run_id = ?, "
                "last_error = ? where generation_id = ? and status = 'pending'",
                [run_id, day, run_id, message[:500], generation_id])
        changed = [d for (d,) in con.execute(
            "select distinct usage_date from meta.generation_queue where generation_id in "
            "(select unnest(cast(? as varchar[]))) and status in ('fetched', 'unavailable')", [fetched_ids + not_found]).fetchall()]
        record_change(con, changed, f"generation:{run_id}")
    unavailable = con.execute(
        "select count(*) from meta.generation_queue where status = 'unavailable' and resolved_on = ? "
        "and generation_id in (select unnest(cast(? as varchar[])))", [day, not_found]).fetchone()[0]
    result = {"day": day.isoformat(), "loaded": len(rows), "not_found": len(not_found),
              "now_unavailable": int(unavailable), "errors": len(errors),
              "deferred": len(merged.get("deferred", [])), "malformed": len(malformed)}
    log.info("generation records loaded for %s: %s", day, result)
    return result


# ----- optional: discovery through the analytics API -------------------------------------------------------

def discover_generation_ids(day: date, run_id: str, enrichment: EnrichmentSettings | None = None,
                            directory: Path | None = None, *, row_limit: int = 10_000, client=None) -> dict[str, Any]:
    """List the day's generation ids with POST /analytics/query and write them as a request-log file.

    Off unless OPENROUTER_SPEND_ANALYTICS_DISCOVERY=true: for applications that log nothing, this is the only
    way to find their generation ids (openrouter-api.md §3.3). Cost: one analytics call per time slice (64
    calls/minute allowed; the `generation_id` dimension only reaches back 31 days); a slice that comes back
    `truncated` (more than 10,000 rows) is split in half and asked again, so a day of N generations costs
    about 2·N/10,000 calls. The ids then go through the same budgeted, sampled /generation enrichment (one
    call each). Lines carry the key's name (`api_key_name`, analytics returns names, not hashes) and
    `discovered_by: analytics`; they land in `landing/requests/_discovered/<day>.jsonl`.
    """
    from openrouter_spend.ingest.client import client_from_environment
    from openrouter_spend.ingest.requests_log import request_log_root

    enrichment = enrichment or EnrichmentSettings.from_env()
    if not enrichment.discovery_enabled:
        return {"day": day.isoformat(), "enabled": False}
    slices = [(day_start(day), day_end(day))]
    found: dict[str, dict] = {}
    calls = 0
    unresolved = []
    with client or client_from_environment() as client:
        while slices:
            begin, end = slices.pop()
            body = {"metrics": ["request_count"], "dimensions": ["generation_id", "api_key_id"],
                    "time_range": {"start": _iso(begin), "end": _iso(end)}, "limit": row_limit}
            result = client.analytics_query(body)
            calls += 1
            if result.get("metadata", {}).get("truncated"):
                if end - begin <= timedelta(minutes=1):
                    unresolved.append(_iso(begin))
                else:
                    middle = begin + (end - begin) / 2
                    slices += [(begin, middle), (middle, end)]
                    continue
            for row in result.get("data", []):
                generation_id = row.get("generation_id")
                if generation_id:
                    found[generation_id] = {"generation_id": generation_id, "created_at": _iso(begin),
                                            "api_key_name": row.get("api_key_id"), "discovered_by": "analytics"}
    target = Path(directory or request_log_root()) / "_discovered" / f"{day.isoformat()}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name("." + target.name + ".tmp")
    temporary.write_text("".join(json.dumps(line) + "\n" for _, line in sorted(found.items())))
    os.replace(temporary, target)
    return {"day": day.isoformat(), "enabled": True, "analytics_calls": calls, "generation_ids": len(found),
            "truncated_slices": unresolved, "file": str(target), "run_id": run_id}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
