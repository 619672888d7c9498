"""A small warehouse whose rpt_savings_opportunities holds hand-written rows of every kind (and one unknown kind),
for the digest's Savings section, the Spend view and the weekly savings notice."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.warehouse import connect

# DAY (2 March 2026) is a Monday: the first usage day of its ISO week.
ALPHA_KEY = key_hash("a-web")


def opportunity(kind: str, project: str, owner: str | None, saving: float, bound: str = "estimate",
                **extra) -> dict:
    """One row of marts.rpt_savings_opportunities on DAY with the columns every kind fills."""
    return {"usage_date": DAY, "project": project, "team": None, "budget_owner": owner, "opportunity_kind": kind,
            "api_key_hash": None, "model_permaslug": extra.pop("model", "vendor/pro"), "model": "vendor/pro",
            "monthly_saving_usd": saving, "bound_kind": bound, "basis": f"basis of {kind} in {project}",
            "loaded_days_7d": 7, **extra}


# Seven opportunities, hand-ranked: 40 (Ann), 25 (Bob), 12 (Ann), 8 (gamma, no owner), 5 (Ann), 3 (Bob), 1.5 (Ann);
# all together $94.50 a month.
OPPORTUNITIES = [
    opportunity("price_change", "beta", "Bob Owner", 25.0, price_direction="rise",
                price_changed_on=DAY - timedelta(days=3)),
    opportunity("prompt_caching", "alpha", "Ann Owner", 40.0, "upper_bound", api_key_hash=ALPHA_KEY,
                cached_share=0.25, prompt_price_per_mtok_usd=3.0, cache_read_price_per_mtok_usd=0.3),
    opportunity("provider_price_spread", "alpha", "Ann Owner", 12.0, provider_name="CheapCloud",
                monthly_saving_low_usd=9.0, monthly_saving_high_usd=15.0, model="vendor/lite"),
    opportunity("premium_vs_standard", "gamma", None, 8.0),
    opportunity("batch_discount", "alpha", "Ann Owner", 5.0, "exact"),
    opportunity("prompt_caching", "beta", "Bob Owner", 3.0, "upper_bound", api_key_hash=key_hash("beta-api"),
                cached_share=0.0),
    opportunity("price_change", "alpha", "Ann Owner", 1.5, price_direction="rise",
                price_changed_on=DAY - timedelta(days=10), model="vendor/old"),
]


# Rows the mart keeps that are no opportunity: a price drop (a saving already made) and a gap wholly pinned by BYOK.
NOT_OPPORTUNITIES = [
    opportunity("price_change", "beta", "Bob Owner", 30.0, price_direction="drop",
                price_changed_on=DAY - timedelta(days=4)),
    opportunity("provider_price_spread", "alpha", "Ann Owner", 0.0, "not_counted", model="vendor/byok"),
]


def scenario(days: list[date]) -> RawRows:
    """alpha's key a-web and beta's key beta-api spend a little on each day."""
    rows = RawRows()
    for day in days:
        rows.workspace(day, "ws-alpha", "alpha-space")
        rows.price(day, "vendor/pro", 3.0, 18.0)
        rows.key(day, "a-web", "ws-alpha", last_used=day).key(day, "beta-api", None, last_used=day)
        rows.use(day, "a-web", "vendor/pro", requests=10, usage=1.0)
        rows.use(day, "beta-api", "vendor/pro", requests=5, usage=0.5)
        rows.credit(day, 100.0, 10.0)
    return rows


def replace_opportunities(path: Path, opportunities: list[dict], day: date | None = None) -> None:
    """Replace the mart's rows of the day (DAY by default) with `opportunities` (columns it lacks are added)."""
    with connect(path) as con:
        con.execute("alter table marts.rpt_savings_opportunities add column if not exists "
                    "monthly_saving_low_usd double")
        con.execute("alter table marts.rpt_savings_opportunities add column if not exists "
                    "monthly_saving_high_usd double")
        con.execute("delete from marts.rpt_savings_opportunities where usage_date = ?", [day or DAY])
        for row in opportunities:
            row = {**row, "usage_date": day or row["usage_date"]}
            con.execute(f"insert into marts.rpt_savings_opportunities ({', '.join(row)}) "
                        f"values ({', '.join('?' for _ in row)})", list(row.values()))


def savings_warehouse(tmp_path: Path, days: list[date] | None = None) -> FixtureWarehouse:
    """A built warehouse for `days` (DAY alone by default) with OPPORTUNITIES on DAY."""
    days = days or [DAY]
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(scenario(days))
    warehouse.build(days)
    replace_opportunities(warehouse.path, OPPORTUNITIES)
    return warehouse
