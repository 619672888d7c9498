"""Key state without reparsing history: stg_keys, the as-of key attribution of fct_daily_spend, dim_api_key and
the unused_key rule give what the whole-history definitions they replaced gave, on a world whose keys vanish,
get renamed, are re-fetched and are used before their first snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.alerts.rules import evaluate_rule, load_rules
from openrouter_spend.warehouse import connect

DAYS = [DAY + timedelta(days=offset) for offset in range(8)]

# The definitions these models had when they windowed over every snapshot ever parsed.
NEWEST_SNAPSHOT_PER_KEY = """
    select * exclude (snapshot_date),
        expires_at is not null and expires_at <= fetched_at as is_expired
    from (
        select *,
            min(snapshot_date) over (partition by api_key_hash) as first_seen_date,
            max(snapshot_date) over (partition by api_key_hash) as last_seen_date
        from staging.stg_key_snapshots
        qualify row_number() over (partition by api_key_hash order by snapshot_date desc, fetched_at desc) = 1
    )
"""
AS_OF_ATTRIBUTION = """
    select spend.usage_date, spend.api_key_hash,
        coalesce(snapshot.api_key_name, latest.api_key_name) as api_key_name,
        coalesce(snapshot.workspace_id, latest.workspace_id) as workspace_id
    from (select distinct usage_date, api_key_hash from marts.fct_daily_spend) as spend
    asof left join staging.stg_key_snapshots as snapshot
        on spend.api_key_hash = snapshot.api_key_hash and spend.usage_date >= snapshot.snapshot_date
    left join staging.stg_keys as latest on spend.api_key_hash = latest.api_key_hash
"""
LAST_ACTIVITY = """
    select api_key_hash, max(usage_date) as last_activity_date
    from staging.stg_activity where requests > 0 group by api_key_hash
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eight days built one at a time; keys vanish, are renamed, re-fetched, disabled and used before listing."""
    warehouse = FixtureWarehouse(tmp_path_factory.mktemp("keys"))
    rows = RawRows()
    for index, day in enumerate(DAYS):
        rows.key(day, "steady", last_used=day).use(day, "steady", "vendor/m", requests=3, usage=1.5)
        if index < 3:  # vanishes from /keys after the third day, keeps its last state
            rows.key(day, "gone", "ws-beta", last_used=day).use(day, "gone", "vendor/m", requests=1, usage=0.5)
        # renamed on the fifth day: days before keep the old name, later days the new one
        rows.key(day, "renamed" if index < 4 else "renamed-v2", hash_=key_hash("renamed"), last_used=day)
        rows.use(day, "renamed", "vendor/m", requests=1, usage=0.75)
        if index >= 5:  # used two days before it is first listed
            rows.key(day, "late", "ws-beta", last_used=day)
        if index >= 3:
            rows.use(day, "late", "vendor/m", requests=2, usage=0.25)
        rows.key(day, "idle", created=DAY - timedelta(days=60), disabled=index == 6)
    # The sixth day's snapshot fetched twice: the later fetch says the idle key's limit changed.
    refetched = datetime.combine(DAYS[5] + timedelta(days=1), time(6, 0), tzinfo=UTC)
    rows.key(DAYS[5], "idle", created=DAY - timedelta(days=60), usage=7.0, fetched=refetched)
    for day in DAYS:
        warehouse.load(rows, {day})
        warehouse.build([day])
    return warehouse


def _difference(warehouse, current: str, reference: str) -> tuple[int, int, int]:
    with connect(warehouse.path, read_only=True) as con:
        rows = con.execute(f"select count(*) from ({current})").fetchone()[0]
        extra = con.execute(f"select count(*) from ({current} except all {reference})").fetchone()[0]
        missing = con.execute(f"select count(*) from ({reference} except all {current})").fetchone()[0]
    return rows, extra, missing


def test_stg_keys_is_the_newest_snapshot_of_every_key_ever_seen(world):
    assert _difference(world, "from staging.stg_keys", NEWEST_SNAPSHOT_PER_KEY) == (5, 0, 0)
    states = {r["api_key_name"]: r for r in world.rows("select * from staging.stg_keys")}
    assert (states["gone"]["last_seen_date"], states["gone"]["first_seen_date"]) == (DAYS[2], DAYS[0])
    assert states["renamed-v2"]["first_seen_date"] == DAYS[0]
    assert states["idle"]["usage_usd"] == 1.0 and states["idle"]["is_disabled"] is False


def test_a_refetched_day_keeps_its_newest_fetch(world):
    usage = world.rows("select usage_usd from staging.stg_key_snapshots "
                       "where api_key_name = 'idle' and snapshot_date = ?", [DAYS[5]])
    assert usage == [{"usage_usd": 7.0}]


def test_fct_daily_spend_names_each_key_as_the_snapshot_of_its_day_saw_it(world, tmp_path):
    # Rebuilt whole, so a day built before its key was first listed also sees the key's newest state.
    rebuilt = world.copy_to(tmp_path / "rebuilt")
    rebuilt.rebuild()
    current = "select distinct usage_date, api_key_hash, api_key_name, workspace_id from marts.fct_daily_spend"
    assert _difference(rebuilt, current, AS_OF_ATTRIBUTION) == (8 + 3 + 5 + 8, 0, 0)
    names = {(r["usage_date"], r["api_key_name"]) for r in rebuilt.rows(current)}
    assert (DAYS[3], "late") in names and (DAYS[5], "late") in names
    assert {(DAYS[2], "gone"), (DAYS[3], "renamed"), (DAYS[4], "renamed-v2")} <= names
    assert (DAYS[3], "renamed-v2") not in names


def test_dim_api_key_counts_the_last_day_with_requests_as_before(world):
    current = "select api_key_hash, last_activity_date from marts.dim_api_key where last_activity_date is not null"
    assert _difference(world, current, LAST_ACTIVITY) == (4, 0, 0)
    assert world.rows("select max(as_of_date) as d from marts.dim_api_key") == [{"d": DAYS[-1]}]


def test_unused_key_reads_the_last_use_up_to_the_evaluated_day(world):
    rule = load_rules().rules["unused_key"]
    with connect(world.path) as con:
        unused = evaluate_rule(con, rule, DAYS[5])
    idle = [row for row in unused if row["api_key_name"] == "idle"]
    assert [row["observed_value"] for row in idle] == [60 + 5]
    assert not [row for row in unused if row["api_key_name"] in ("steady", "late")]
