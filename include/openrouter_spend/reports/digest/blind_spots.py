"""What the data cannot see: per-request coverage, pending ids, gaps and skipped snapshots, in the digest's words.

The sentences are the blocks of templates/digest/blind_spots.txt.j2; this module finds which apply.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from openrouter_spend import rendering
from openrouter_spend.reports.digest.data import ACCOUNT, DigestData
from openrouter_spend.reports.digest.queries import columns_of, has_table, rows

# Per-request coverage at or above this share counts as complete (rounding of logged vs /activity counts).
FULL_COVERAGE = 0.999
SENTENCES = "digest/blind_spots.txt.j2"


def _say(sentence: str, **context: Any) -> str:
    """One sentence of blind_spots.txt.j2."""
    return rendering.render_blocks(SENTENCES, (sentence,), **context)[sentence]


def sample_label(coverage: float | None) -> str | None:
    """The blind-spot label of per-request figures that come from part of the traffic; None when complete."""
    if coverage is None or coverage <= 0 or coverage >= FULL_COVERAGE:
        return None
    return _say("sample_label", coverage=coverage)


def blind_spot_rows(con, day: date) -> list[dict[str, Any]]:
    if not has_table(con, "marts", "rpt_blind_spots_daily"):
        return []
    names = columns_of(con, "marts", "rpt_blind_spots_daily")
    if "usage_date" not in names:
        return []
    order = "project = '*' desc, spend_usd desc nulls last, project" if {"project", "spend_usd"} <= set(names) else "all"
    found = rows(con, f"select * from marts.rpt_blind_spots_daily where usage_date = ? order by {order}", [day])
    # A project whose per-request figures come from a few logged requests is not free of blind spots.
    for row in found:
        label = sample_label(row.get("per_request_request_coverage_share"))
        if label and isinstance(row.get("blind_spots"), list):
            row["blind_spots"] = [label, *row["blind_spots"]]
    return found


def _account(rows_: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((row for row in rows_ if row["project"] == ACCOUNT), None)


def blind_spots(con, data: DigestData) -> list[str]:
    """What the numbers cannot see on this day, in plain words (always listed, never a confident zero)."""
    spots = []
    byok = data.totals["byok_spend_usd"]
    if byok:
        spots.append(_say("byok", byok=byok))
    economics = _account(data.unit_economics)
    coverage = economics.get("generation_coverage_share") if economics else None
    logged = economics.get("per_request_requests") if economics else None
    if coverage is None:
        spots.append(_say("no_per_request"))
    elif logged is not None and economics.get("requests") and logged < FULL_COVERAGE * economics["requests"]:
        spots.append(_say("sampled", logged=logged, requests=economics["requests"], coverage=coverage))
    month = data.month
    missing = month["days_elapsed"] - month["loaded_days"]
    if missing > 0:
        spots.append(_say("missing_days", missing=missing, days_elapsed=month["days_elapsed"]))
    if month["gap_days"]:
        spots.append(_say("gap_days", gap_days=month["gap_days"]))
    if any(row.get("waste_method") == "aggregate_estimate" for row in data.waste):
        spots.append(_say("aggregate_waste"))
    if any(row.get("waste_method") == "per_request" for row in data.waste):
        spots.append(_say("per_request_waste"))
    unattributed = con.execute(
        "select coalesce(sum(spend_usd), 0) from marts.fct_daily_spend where usage_date = ? "
        "and api_key_hash = '(unattributed)'", [data.day]).fetchone()[0]
    if unattributed:
        spots.append(_say("unattributed", unattributed=unattributed))
    spots += _skipped_snapshots(con, data.day)
    spots += _pending_details(con, data.day)
    return spots


def _pending_details(con, day: date) -> list[str]:
    """Logged requests still waiting for their /generation record (a run ran out of time, a rate limit)."""
    if not has_table(con, "marts", "fct_generations"):
        return []
    pending = con.execute("select count(*) from marts.fct_generations where usage_date = ? "
                          "and enrichment_status = 'pending'", [day]).fetchone()[0]
    if not pending:
        return []
    return [_say("pending", pending=pending)]


def _skipped_snapshots(con, day: date) -> list[str]:
    """The /credits and /keys reconciliations the day's gate skipped, with the reason (a late snapshot, say)."""
    if not has_table(con, "marts", "fct_quality_results") or \
            "skip_reason" not in columns_of(con, "marts", "fct_quality_results"):
        return []
    found = con.execute(
        """
        with latest as (
            select run_id from marts.fct_quality_runs where usage_date = ? order by validated_at desc limit 1
        )
        select distinct dataset, skip_reason
        from marts.fct_quality_results
        where usage_date = ? and run_id = (select run_id from latest) and compared_values = 'skipped'
            and skip_reason is not null
        order by dataset
        """, [day, day]).fetchall()
    spots = [_say("skipped", dataset=dataset, reason=reason) for dataset, reason in found]
    late = con.execute("select count(*) from marts.fct_credit_balance where as_of_date = ? and balance_usd is null",
                       [day]).fetchone()[0]
    if late:
        spots.append(_say("late_snapshot"))
    return spots
