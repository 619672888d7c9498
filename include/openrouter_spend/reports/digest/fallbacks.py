"""The digest's fallback figures: per project for the day, scaled to the project's traffic, and the trend."""

from __future__ import annotations

from datetime import date
from typing import Any

from openrouter_spend.reports.digest.queries import columns_of, has_table, rows


def by_project(con, day: date) -> list[dict[str, Any]]:
    """Fallbacks per project, scaled from the logged requests to the project's traffic, with 95% intervals."""
    if not has_table(con, "marts", "fct_fallback_daily"):
        return []
    interval = "fallback_request_share_ci_low" in columns_of(con, "marts", "rpt_unit_economics_daily")
    scaled = "traffic_requests" in columns_of(con, "marts", "fct_fallback_daily")

    def traffic(column: str, logged: str) -> str:
        return f"sum(coalesce({column}, {logged}))" if scaled else f"sum({logged})"

    found = rows(con, f"""
        with daily as (
            select project, sum(requests) as logged_requests, {traffic("traffic_requests", "requests")} as requests,
                   sum(fallback_requests) / nullif(sum(requests), 0) as fallback_share,
                   {traffic("traffic_fallback_requests", "fallback_requests")} as fallback_requests,
                   {traffic("traffic_fallback_spend_usd", "fallback_spend_usd")} as fallback_spend_usd,
                   {traffic("traffic_fallback_extra_cost_usd", "fallback_extra_cost_usd")} as fallback_extra_cost_usd,
                   {"any_value(request_coverage_share)" if scaled else "null"} as coverage_share,
                   bool_and(estimate_method = 'census') as is_census
            from marts.fct_fallback_daily where usage_date = $day group by project
        )
        select daily.*,
               {"economics.fallback_request_share_ci_low" if interval else "null"} as fallback_share_ci_low,
               {"economics.fallback_request_share_ci_high" if interval else "null"} as fallback_share_ci_high
        from daily
        {"left join marts.rpt_unit_economics_daily as economics on economics.usage_date = $day"
         " and economics.project = daily.project" if interval else ""}
        order by daily.requests desc, daily.project""", {"day": day})
    for row in found:
        # Money follows the number of fallbacks: its interval is the share's, at the sample's cost per fallback.
        share, low, high = row["fallback_share"], row["fallback_share_ci_low"], row["fallback_share_ci_high"]
        for name in ("fallback_spend_usd", "fallback_extra_cost_usd"):
            value = row[name]
            bounds = (None, None)
            if share and value is not None and low is not None and high is not None:
                bounds = tuple(sorted((value * low / share, value * high / share)))
            row[f"{name}_ci"] = bounds
    return found


def trend(con, first: date, day: date) -> list[dict[str, Any]]:
    """Each project's daily fallback share from `first` to `day`, with its 95% interval when the marts have it."""
    if not has_table(con, "marts", "fct_fallback_daily"):
        return []
    interval = "fallback_request_share_ci_low" in columns_of(con, "marts", "rpt_unit_economics_daily")
    return rows(con, f"""
        with daily as (
            select usage_date, project, sum(fallback_requests) / nullif(sum(requests), 0) as fallback_share
            from marts.fct_fallback_daily where usage_date between $first and $day
            group by all
        )
        select daily.*,
               {"economics.fallback_request_share_ci_low" if interval else "null"} as fallback_share_ci_low,
               {"economics.fallback_request_share_ci_high" if interval else "null"} as fallback_share_ci_high
        from daily
        {"left join marts.rpt_unit_economics_daily as economics using (usage_date, project)" if interval else ""}
        order by usage_date, project""", {"first": first, "day": day})
