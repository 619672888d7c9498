"""Savings opportunities of a day (marts.rpt_savings_opportunities): ranked in dollars a month, routed to owners.

The digest, the Spend view and the weekly savings notice (alerts.savings_notices) read them here. Kinds are
treated alike: each gets its label from KIND_LABELS (an unknown kind shows its own name) and its "what to do"
sentence from the block `do_<kind>` of templates/digest/savings.txt.j2 (`do_other` when it has none). The
monthly figure reads by its bound_kind: an upper bound is "up to", an estimate "about", with its interval
when the kind provides one (monthly_saving_low_usd, monthly_saving_high_usd).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from openrouter_spend import rendering
from openrouter_spend.reports.digest.queries import columns_of, has_table, rows

TABLE = "marts.rpt_savings_opportunities"
# The digest lists this many opportunities, the weekly notice this many per owner.
DIGEST_TOP = 5
NOTICE_TOP = 3
KIND_LABELS = {
    "prompt_caching": "Prompt caching",
    "price_change": "Price change",
    "provider_price_spread": "Cheaper provider",
    "premium_vs_standard": "Standard instead of premium",
}
SENTENCES = "digest/savings.txt.j2"
UPPER_BOUND = "upper_bound"


def kind_label(kind: str) -> str:
    """The reader's name of an opportunity kind; an unknown kind keeps its own name."""
    return KIND_LABELS.get(kind, kind)


def owner_of(row: dict[str, Any]) -> str:
    """Who acts on an opportunity: its budget owner, else its project ("project x")."""
    return row.get("budget_owner") or f"project {row['project']}"


def _say(sentence: str, **context: Any) -> str:
    return rendering.render_blocks(SENTENCES, (sentence,), **context)[sentence]


def _action(row: dict[str, Any]) -> str:
    blocks = rendering.environment("text").get_template(SENTENCES).blocks
    block = f"do_{row['opportunity_kind']}"
    key = row.get("api_key_name") or (row.get("api_key_hash") or "")[:12]
    return _say(block if block in blocks else "do_other", row=row, key=key)


def figures(row: dict[str, Any]) -> dict[str, str]:
    """The monthly figure in words: figure "up to $12.34", interval "$3.00 to $7.00" (or empty) and both as
    saving, "about $5.00 a month ($3.00 to $7.00)"."""
    blocks = rendering.render_blocks(SENTENCES, ("figure", "interval"), row=row,
                                     low=row.get("monthly_saving_low_usd"), high=row.get("monthly_saving_high_usd"))
    return {**blocks, "saving": _say("saving", **blocks)}


def described(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its label, owner, what to do (action) and its monthly figure in words (figures)."""
    return {**row, "label": kind_label(row["opportunity_kind"]), "owner": owner_of(row), "action": _action(row),
            **figures(row)}


def read(con, day: date) -> list[dict[str, Any]]:
    """The day's opportunities, largest monthly saving first, each described; none when the mart is absent.

    A price drop is a saving already made and a gap wholly pinned by BYOK (bound_kind 'not_counted') is no
    saving at all: the mart keeps both rows, the lists and totals here leave them out.
    """
    if not has_table(con, "marts", "rpt_savings_opportunities"):
        return []
    key_names = has_table(con, "marts", "dim_api_key") and "api_key_name" in columns_of(con, "marts", "dim_api_key")
    found = rows(con, f"""
        select savings.*{", keys.api_key_name" if key_names else ""}
        from {TABLE} as savings
        {"left join marts.dim_api_key as keys using (api_key_hash)" if key_names else ""}
        where savings.usage_date = ?
          and savings.bound_kind <> 'not_counted'
          and coalesce(savings.price_direction, '') <> 'drop'
        order by savings.monthly_saving_usd desc, savings.project, savings.opportunity_kind,
                 savings.model_permaslug, savings.api_key_hash nulls first""", [day])
    return [described(row) for row in found]


def summary(opportunities: list[dict[str, Any]], top: int = DIGEST_TOP) -> dict[str, Any]:
    """The ranked list cut to `top`, with the total of all of them and how many are left out."""
    total = sum(row["monthly_saving_usd"] for row in opportunities)
    bound = any(row["bound_kind"] == UPPER_BOUND for row in opportunities)
    shown: set[str] = set()
    listed = []
    for row in opportunities[:top]:
        # A basis already shown above (the same method and days) is named, not repeated: the list stays short.
        listed.append({**row, "basis_shown_above": row["basis"] in shown})
        shown.add(row["basis"])
    return {
        "top": listed,
        "count": len(opportunities),
        "more": max(0, len(opportunities) - top),
        "total_usd": total,
        "owners": len({row["owner"] for row in opportunities}),
        "total_text": _say("total", total=total, bound=bound, count=len(opportunities)) if opportunities else "",
        "more_text": _say("more", more=len(opportunities) - top) if len(opportunities) > top else "",
    }


def per_owner(opportunities: Iterable[dict[str, Any]], top: int = NOTICE_TOP) -> dict[str, dict[str, Any]]:
    """Each owner's opportunities (already ranked), cut to `top`, with the owner's total; owners by name."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in opportunities:
        grouped.setdefault(row["owner"], []).append(row)
    return {owner: {**summary(found, top), "budget_owner": found[0].get("budget_owner"),
                    "projects": sorted({row["project"] for row in found})}
            for owner, found in sorted(grouped.items())}
