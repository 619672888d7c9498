"""Plain-text summaries of the warehouse for the CLI (rows per table, spend per day, output paths).

The summary is the template templates/reports/summary.txt.j2; this module reads what it shows.
"""

from __future__ import annotations

from datetime import date

from openrouter_spend import rendering
from openrouter_spend.config import settings
from openrouter_spend.warehouse import connect, table_counts


def day_status(day: date) -> str:
    """'credits $X' (and '+ BYOK $Y' when any) for a loaded day, from per-key activity, or why there is none.

    Credits are what the headline's burn counts; BYOK spend is paid to providers directly, so it is named.
    """
    if not settings.paths().warehouse.exists():
        return "no warehouse"
    with connect(read_only=True) as con:
        if _has_relation(con, "meta", "extraction_gaps") and con.execute(
            "select count(*) from meta.extraction_gaps where partition_date = ?", [day]
        ).fetchone()[0]:
            return "gap: outside the API's 30-day window"
        if not _has_relation(con, "staging", "stg_activity"):
            return "no staging yet"
        credits, byok = con.execute(
            "select coalesce(sum(usage_usd), 0), coalesce(sum(byok_usage_usd), 0) from staging.stg_activity"
            " where usage_date = ?", [day],
        ).fetchone()
    return f"credits ${credits:,.2f}" + (f" + BYOK ${byok:,.2f}" if byok else "")


def _has_relation(con, schema: str, name: str) -> bool:
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    ).fetchone()[0])


def _headline(con) -> dict:
    """The newest balance row and that day's spend by project, when the marts are built."""
    if not _has_relation(con, "marts", "fct_credit_balance"):
        return {"balance": None, "projects": []}
    balance = con.execute(
        "select as_of_date, balance_usd, burn_usd, burn_7d_avg_usd, runway_days from marts.fct_credit_balance"
        " order by as_of_date desc limit 1"
    ).fetchone()
    if balance is None:
        return {"balance": None, "projects": []}
    projects = con.execute(
        "select project, budget_owner, sum(spend_usd) from marts.fct_daily_spend where usage_date = ?"
        " group by all order by 3 desc", [balance[0]]
    ).fetchall()
    return {"balance": balance, "projects": projects}


def render_summary(days: list[date] | None) -> str:
    """Rows per table, spend per day (for `days`, or every loaded day), gaps and where outputs live."""
    paths = settings.paths()
    context = {"paths": paths, "landing": settings.api_landing_root()}
    if paths.warehouse.exists():
        with connect(read_only=True) as con:
            counts = table_counts(con)
            context.update(counts=counts, width=max((len(name) for name in counts), default=10),
                           spend_rows=_spend_rows(con, days), **_headline(con),
                           gaps=con.execute("select partition_date, endpoint, reason from meta.extraction_gaps"
                                            " order by 1").fetchall()
                           if _has_relation(con, "meta", "extraction_gaps") else [])
    return rendering.render("reports/summary.txt.j2", **context)


def _spend_rows(con, days: list[date] | None) -> list[tuple] | None:
    """Credits, BYOK, requests and keys per loaded day (for `days`, or all); None before staging exists."""
    if not _has_relation(con, "staging", "stg_activity"):
        return None
    query = (
        "select usage_date, sum(usage_usd), sum(byok_usage_usd), sum(requests), count(distinct api_key_hash)"
        " from staging.stg_activity {where} group by 1 order by 1"
    )
    if days:
        return con.execute(query.format(where="where usage_date between ? and ?"), [min(days), max(days)]).fetchall()
    return con.execute(query.format(where="")).fetchall()
