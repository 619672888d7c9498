"""Step 1 of enrichment (warehouse): the /generation plan of a usage day, and the run's work list.

Each usage day has its own budget of `daily_call_budget` ids, planned in SQL in one transaction of its own so
that a backfill never holds more than one day's ids and a crashed plan is finished by the next run (the queue
write is an upsert of the rows whose plan changed). `openrouter_spend.ingest.enrich` has steps 2 and 3.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openrouter_spend.ingest.enrich import EnrichmentSettings, worklist_path
from openrouter_spend.warehouse.connection import transaction
from openrouter_spend.warehouse.memory import within_process_budget

log = logging.getLogger(__name__)


def allocate_sample(counts: Mapping[str, int], budget: int, minimum: int = 2) -> dict[str, int]:
    """Calls per stratum: everything when the budget allows, else `minimum` each then proportional to size.

    Proportional allocation keeps the sample self-weighting within the budget; the floor gives every stratum
    enough draws for a variance estimate. When the budget cannot give every stratum its floor, the largest
    strata get one call each first. Deterministic (ties broken by stratum name).
    """
    counts = {stratum: int(n) for stratum, n in counts.items() if n > 0}
    budget = max(0, int(budget))
    if sum(counts.values()) <= budget:
        return dict(counts)
    order = sorted(counts, key=lambda s: (-counts[s], s))
    floors = {s: min(counts[s], minimum) for s in order}
    if sum(floors.values()) >= budget:
        allocation = dict.fromkeys(order, 0)
        while budget > 0:
            progressed = False
            for stratum in order:
                if budget and allocation[stratum] < floors[stratum]:
                    allocation[stratum] += 1
                    budget -= 1
                    progressed = True
            if not progressed:
                break
        return {s: n for s, n in allocation.items() if n}
    allocation = dict(floors)
    spare = budget - sum(floors.values())
    capacity = {s: counts[s] - floors[s] for s in order}
    total_capacity = sum(capacity.values())
    shares = {s: spare * capacity[s] / total_capacity for s in order}
    for stratum in order:
        allocation[stratum] += math.floor(shares[stratum])
    leftover = budget - sum(allocation.values())
    for stratum in sorted(order, key=lambda s: (-(shares[s] - math.floor(shares[s])), s)):
        if leftover <= 0:
            break
        if allocation[stratum] < counts[stratum]:
            allocation[stratum] += 1
            leftover -= 1
    return allocation


def plan_enrichment(con, day: date, run_id: str, enrichment: EnrichmentSettings | None = None) -> dict[str, Any]:
    """Derive the /generation plan of the run's usage day (and of earlier days with work left); write the work list.

    The budget is per usage day (`daily_call_budget` distinct ids called for that day's requests, whatever
    their 404 retries take), so one day never spends another's. A day whose ids fit its budget is a census;
    otherwise a stratified sample (allocate_sample, then md5 order within each stratum). The plan of a day is
    a function of its logged ids and of what was already called, so rerunning a day re-derives its queue:
    ids wrongly left 'not_sampled' are selected again and lost queue rows come back (as 'fetched' when their
    record is in raw.generations). Earlier days are re-derived when they have ids never queued (late logs)
    or ids still pending (404s, runs out of time), within what their own budget has left.

    Each usage day is planned in DuckDB in its own transaction that writes only the queue rows whose plan
    changed, so memory is bounded by one day's ids, a rerun writes next to nothing, and a plan interrupted
    after some days is completed by the next run (an upsert: no duplicate keys).
    """
    enrichment = enrichment or EnrichmentSettings.from_env()
    budget = enrichment.daily_call_budget
    earlier = [usage_date for (usage_date,) in con.execute(
        """
        select distinct logged.usage_date
        from raw.request_log as logged
        where logged.usage_date < ?
            and logged.openrouter_metadata is null
            and not exists (select 1 from raw.generations as generations
                            where generations.generation_id = logged.generation_id)
            and not exists (select 1 from meta.generation_queue as queue
                            where queue.generation_id = logged.generation_id and queue.status <> 'pending')
        order by logged.usage_date
        """,
        [day],
    ).fetchall()]
    ids: list[str] = []
    by_day: dict[str, dict[str, Any]] = {}
    strata = 0
    for usage_date in [*earlier, day]:
        day_ids, summary, day_strata = _plan_usage_day(con, usage_date, day, run_id, enrichment)
        # An earlier day is reported only when it had work left (ids never queued or still pending).
        if usage_date == day or summary.pop("open_ids"):
            summary.pop("open_ids", None)
            by_day[usage_date.isoformat()] = summary
            ids += day_ids
        if usage_date == day:
            strata = day_strata
    _write_worklist(day, run_id, ids, enrichment)
    own = by_day.get(day.isoformat(), {})
    plan = {"day": day.isoformat(), "calls_planned": len(ids),
            "retries": sum(d["retries"] for d in by_day.values()),
            "new_ids": sum(d["new_ids"] for d in by_day.values()),
            "not_sampled": own.get("not_sampled", 0), "census": own.get("census", True),
            "budget": budget, "strata": strata, "usage_days": by_day}
    log.info("generation enrichment plan for %s: %s", day, plan)
    return plan


def _plan_usage_day(con, usage_date: date, run_day: date, run_id: str,
                    enrichment: EnrichmentSettings) -> tuple[list[str], dict[str, Any], int]:
    """Plan one usage day's ids in one transaction; returns its pending ids, its summary and its strata count."""
    budget = enrichment.daily_call_budget
    with within_process_budget(con), transaction(con):
        # An id belongs to the first day it was logged on and needs a call only when no line of it, on any
        # day, carries openrouter_metadata; the other days are read only for the day's own ids.
        con.execute(
            """
            create or replace temp table day_ids as
            with
            logged as (
                select
                    generation_id,
                    min(project) as project,
                    min(api_key_hash) as api_key_hash,
                    min(requested_model) as requested_model,
                    bool_or(openrouter_metadata is not null) as is_described
                from raw.request_log
                where usage_date = $usage_date
                group by generation_id
            ),
            elsewhere as (
                select
                    generation_id,
                    bool_or(openrouter_metadata is not null) as is_described,
                    min(usage_date) as first_logged_on
                from raw.request_log
                semi join logged using (generation_id)
                where usage_date <> $usage_date
                group by generation_id
            ),
            needs_call as (
                select
                    logged.generation_id,
                    cast($usage_date as date) as usage_date,
                    marts.sampling_stratum(logged.project, logged.api_key_hash, logged.requested_model, false)
                        as sampling_stratum
                from logged
                left join elsewhere using (generation_id)
                where not logged.is_described
                    and not coalesce(elsewhere.is_described, false)
                    and coalesce(elsewhere.first_logged_on > $usage_date, true)
            )
            select
                needs_call.*,
                generations.generation_id is not null as is_fetched,
                queue.generation_id is not null as was_queued,
                queue.status as queue_status,
                queue.usage_date as queued_usage_date,
                queue.sampling_stratum as queued_stratum,
                queue.resolved_on as queued_resolved_on,
                coalesce(queue.attempts, 0) as attempts,
                row_number() over (partition by needs_call.sampling_stratum
                                   order by md5(needs_call.generation_id)) as draw
            from needs_call
            left join raw.generations as generations using (generation_id)
            left join meta.generation_queue as queue using (generation_id)
            """,
            {"usage_date": usage_date},
        )
        counts = dict(con.execute("select sampling_stratum, count(*) from day_ids group by all").fetchall())
        sizes = allocate_sample(counts, budget, enrichment.min_sample_per_stratum)
        con.execute("create or replace temp table sample_sizes (sampling_stratum varchar, calls integer)")
        if sizes:
            con.executemany("insert into sample_sizes values (?, ?)", sorted(sizes.items()))
        # Resolved or attempted ids have used the day's budget; newly selected ones get what is left of it.
        con.execute(
            """
            create or replace temp table derived as
            with
            drawn as (
                select
                    day_ids.*,
                    case
                        when is_fetched then 'fetched'
                        when queue_status = 'unavailable' then 'unavailable'
                        when attempts > 0 then 'pending'
                        when draw <= coalesce(sample_sizes.calls, 0) then 'selected'
                        else 'not_sampled'
                    end as drawn_status
                from day_ids
                left join sample_sizes using (sampling_stratum)
            ),
            -- An aggregate joined back, not count(*) filter (...) over (): DuckDB evaluates that window
            -- frame per row (quadratic: 90 s of CPU for a day of 500,000 ids).
            spent as (
                select count(*) filter (where drawn_status in ('fetched', 'unavailable', 'pending')) as used
                from drawn
            ),
            ranked as (
                select
                    drawn.*,
                    spent.used,
                    row_number() over (partition by drawn.drawn_status order by md5(drawn.generation_id)) as rank
                from drawn
                cross join spent
            )
            select
                * exclude (drawn_status, used, rank, draw),
                case
                    when drawn_status <> 'selected' then drawn_status
                    when rank <= ? - used then 'pending'
                    else 'not_sampled'
                end as status
            from ranked
            """,
            [budget],
        )
        # Only rows whose plan changed are written: a rerun of a planned day touches next to nothing.
        con.execute(
            """
            insert into meta.generation_queue
                (generation_id, usage_date, sampling_stratum, status, planned_on, planned_run_id, resolved_on)
            select generation_id, usage_date, sampling_stratum, status, $run_day, $run_id,
                case when status = 'fetched' then $run_day end
            from derived
            where not was_queued
                or queue_status is distinct from status
                or queued_usage_date is distinct from usage_date
                or queued_stratum is distinct from sampling_stratum
                or (status = 'fetched' and queued_resolved_on is null)
            on conflict (generation_id) do update set
                usage_date = excluded.usage_date,
                sampling_stratum = excluded.sampling_stratum,
                status = excluded.status,
                planned_on = case when generation_queue.status = excluded.status then generation_queue.planned_on
                                  else excluded.planned_on end,
                planned_run_id = case when generation_queue.status = excluded.status
                                      then generation_queue.planned_run_id else excluded.planned_run_id end,
                resolved_on = coalesce(generation_queue.resolved_on, excluded.resolved_on)
            """,
            {"run_day": run_day, "run_id": run_id},
        )
        ids = [gid for (gid,) in con.execute(
            "select generation_id from derived where status = 'pending' order by md5(generation_id)").fetchall()]
        n, pending, retries, new_ids, not_sampled, open_ids, strata = con.execute(
            """
            select
                count(*),
                count(*) filter (where status = 'pending'),
                count(*) filter (where status = 'pending' and queue_status = 'pending'),
                count(*) filter (where not was_queued),
                count(*) filter (where status = 'not_sampled'),
                count(*) filter (where not is_fetched and (not was_queued or queue_status = 'pending')),
                count(distinct sampling_stratum)
            from derived
            """
        ).fetchone()
        for table in ("day_ids", "sample_sizes", "derived"):
            con.execute(f"drop table {table}")
    summary = {"ids": n, "pending": pending, "retries": retries, "new_ids": new_ids, "not_sampled": not_sampled,
               "census": not_sampled == 0, "open_ids": open_ids}
    return ids, summary, strata


def _write_worklist(day: date, run_id: str, ids: list[str], enrichment: EnrichmentSettings) -> None:
    path = worklist_path(day, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"day": day.isoformat(), "run_id": run_id, "generation_ids": ids,
                       "written_at": datetime.now(UTC).isoformat(), "settings": {
                           "concurrency": enrichment.concurrency,
                           "requests_per_second": enrichment.requests_per_second}})
    if isinstance(path, Path):
        temporary = path.with_name("." + path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    else:
        path.write_text(text)
