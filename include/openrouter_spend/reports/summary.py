"""Plain-text summaries of the warehouse for the CLI (rows per table, spend per day, output paths)."""

from __future__ import annotations

from datetime import date

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


def _headline(con) -> list[str]:
    """Balance, runway and the newest day's spend by project, when the marts are built."""
    if not _has_relation(con, "marts", "fct_credit_balance"):
        return []
    balance = con.execute(
        "select as_of_date, balance_usd, burn_usd, burn_7d_avg_usd, runway_days from marts.fct_credit_balance"
        " order by as_of_date desc limit 1"
    ).fetchone()
    if balance is None:
        return []
    day, balance_usd, burn, burn_avg, runway = balance
    lines = ["", f"Headline for {day}"]
    if balance_usd is None:  # the day's /credits snapshot is late: its end-of-day balance is unknown
        balance_text, runway_text = "balance unknown (late /credits snapshot)", "runway unknown"
    else:
        balance_text = f"balance ${balance_usd:,.2f}"
        runway_text = f"{runway:.1f} days of runway" if runway is not None else "no burn, runway unbounded"
    lines.append(f"  {balance_text}, burn ${burn or 0:,.2f} (7-day average ${burn_avg or 0:,.2f}), "
                 f"{runway_text}")
    projects = con.execute(
        "select project, budget_owner, sum(spend_usd) from marts.fct_daily_spend where usage_date = ?"
        " group by all order by 3 desc", [day]
    ).fetchall()
    for project, owner, spend in projects:
        lines.append(f"  {project:<24} {owner or 'no owner':<20} ${spend:>10,.2f}")
    return lines


def render_summary(days: list[date] | None) -> str:
    """Rows per table, spend per day (for `days`, or every loaded day), gaps and where outputs live."""
    paths = settings.paths()
    lines = []
    if not paths.warehouse.exists():
        return f"No warehouse yet at {paths.warehouse}; run `openrouter-spend run` first."
    with connect(read_only=True) as con:
        counts = table_counts(con)
        lines.append("Rows per table")
        width = max((len(name) for name in counts), default=10)
        for name, count in counts.items():
            lines.append(f"  {name:<{width}}  {count:>10,}")
        if _has_relation(con, "staging", "stg_activity"):
            query = (
                "select usage_date, sum(usage_usd), sum(byok_usage_usd), sum(requests), count(distinct api_key_hash)"
                " from staging.stg_activity {where} group by 1 order by 1"
            )
            if days:
                rows = con.execute(query.format(where="where usage_date between ? and ?"),
                                   [min(days), max(days)]).fetchall()
            else:
                rows = con.execute(query.format(where="")).fetchall()
            lines.append("")
            lines.append("Spend per day (USD)")
            lines.append(f"  {'day':<10}  {'credits':>12}  {'byok':>10}  {'requests':>10}  {'keys':>5}")
            for day, usage, byok, requests, keys in rows:
                lines.append(f"  {day}  {usage:>12,.2f}  {byok:>10,.2f}  {requests:>10,}  {keys:>5}")
            if rows:
                lines.append(f"  {'total':<10}  {sum(r[1] for r in rows):>12,.2f}  {sum(r[2] for r in rows):>10,.2f}"
                             f"  {sum(r[3] for r in rows):>10,}")
        lines.extend(_headline(con))
        gaps = con.execute(
            "select partition_date, endpoint, reason from meta.extraction_gaps order by 1"
        ).fetchall() if _has_relation(con, "meta", "extraction_gaps") else []
    if gaps:
        lines.append("")
        lines.append("Permanent gaps (days the API no longer serves)")
        for day, endpoint, reason in gaps:
            lines.append(f"  {day} {endpoint}: {reason}")
    lines.append("")
    lines.append("Outputs")
    lines.append(f"  warehouse  {paths.warehouse}")
    lines.append(f"  landing    {settings.api_landing_root()}")
    lines.append(f"  published  {paths.published}")
    lines.append(f"  digests    {paths.digests}")
    lines.append(f"  focus      {paths.home / 'focus'}")
    lines.append(f"  alerts     {paths.alerts}")
    lines.append(f"  quality    {paths.quality / 'docs' / 'index.html'}")
    return "\n".join(lines)
