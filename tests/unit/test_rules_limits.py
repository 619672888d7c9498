"""Every decision rule at its documented detection limit (docs/alerts.md, "Detection limits"): on synthetic
histories it fires at the limit and stays silent just below it. Plus the three cases the limits were chosen
for: a fallback surge on ~150 logged requests, a runaway key with no accepted-result signal, and unowned
spend (a persistent 5-6% share, a new unowned key)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from marts_fixtures import OWNERS, FixtureWarehouse, RawRows
from test_rules_sql import _quality_run, write_rules

from openrouter_spend import alerts
from openrouter_spend.alerts.rules import annotation_explains, evaluate_rule, load_rules
from openrouter_spend.warehouse import connect

MONDAY = date(2026, 3, 2)
DAYS = [MONDAY + timedelta(days=i) for i in range(5)]  # Monday 2 .. Friday 6 March; the event day is DAYS[-1]
TODAY = DAYS[-1]

# alpha sits at the limit, beta just below it; both under one roof so a single build tests both sides.
LIMIT_OWNERS = OWNERS.replace('budgets_usd: {daily: 5}', 'budgets_usd: {daily: 10}').replace(
    'budgets_usd: {daily: 10, weekly: 50, monthly: 200}', 'budgets_usd: {daily: 10}')


@pytest.fixture
def make_warehouse(tmp_path, monkeypatch):
    """A fixture warehouse (OPENROUTER_SPEND_HOME) with the default rules.yaml in its config folder."""
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))

    def make(rows: RawRows, days: list[date] = DAYS, **config) -> FixtureWarehouse:
        warehouse = FixtureWarehouse(tmp_path, **({"owners": LIMIT_OWNERS} | config))
        write_rules(warehouse.config_dir)
        warehouse.load(rows)
        warehouse.build(days)
        return warehouse

    return make


def fired(warehouse: FixtureWarehouse, rule_id: str, day: date = TODAY) -> dict[str, dict]:
    """The rule's candidate rows for the day, by segment."""
    rule = load_rules(warehouse.config_dir).rules[rule_id]
    with connect(warehouse.path) as con:
        return {row["segment_key"]: row for row in evaluate_rule(con, rule, day)}


def daily_use(rows: RawRows, key: str, workspace: str | None, by_day: dict[date, tuple], model: str = "vendor/m",
              provider: str = "ProviderA", created: date = date(2026, 1, 1)) -> RawRows:
    """Per day (requests, usage) or (requests, usage, completion tokens) for one key on one model."""
    for day, figures in by_day.items():
        requests, usage, *completion = figures
        rows.key(day, key, workspace, last_used=day, created=created)
        rows.use(day, key, model, provider, requests=requests, usage=usage, prompt=requests * 1000,
                 completion=completion[0] if completion else requests * 100)
    return rows


def history(value, today_value) -> dict[date, tuple]:
    return {day: (today_value if day == TODAY else value) for day in DAYS}


# ----- spend ------------------------------------------------------------------------------------------------


def test_credit_burn_spike_fires_at_one_and_a_half_times_usual_and_five_dollars_more(make_warehouse):
    rows = RawRows()
    # The usual day: 100 requests for $10. Today alpha runs 150 requests for $15 (1.5×, +$5, ≥ $10);
    # beta runs 149 for $14.90 (1.49×, +$4.90).
    daily_use(rows, "a-web", "ws-alpha", history((100, 10.0), (150, 15.0)))
    daily_use(rows, "beta-api", "ws-beta", history((100, 10.0), (149, 14.9)))
    warehouse = make_warehouse(rows)

    spikes = fired(warehouse, "credit_burn_spike")

    assert set(spikes) == {"project=alpha"}
    alpha = spikes["project=alpha"]
    assert (alpha["observed_value"], alpha["expected_value"], alpha["threshold_value"], alpha["impact_usd"]) == \
        (pytest.approx(15.0), pytest.approx(10.0), pytest.approx(15.0), pytest.approx(5.0))


def test_premium_share_rise_fires_at_ten_points_and_two_dollars(make_warehouse):
    rows = RawRows()
    for key, workspace, today_premium in (("a-web", "ws-alpha", 6.0), ("beta-api", "ws-beta", 5.98)):
        for day in DAYS:
            premium = today_premium if day == TODAY else 4.0  # of $20 a day: 20% usually, 30% (29.9%) today
            rows.key(day, key, workspace, last_used=day)
            rows.use(day, key, "vendor/listed-a", requests=40, usage=premium)
            rows.use(day, key, "vendor/m", requests=160, usage=20.0 - premium)
    warehouse = make_warehouse(rows)

    rises = fired(warehouse, "premium_share_rise")

    assert set(rises) == {"project=alpha"}
    alpha = rises["project=alpha"]
    assert (alpha["observed_value"], alpha["expected_value"], alpha["impact_usd"]) == \
        (pytest.approx(0.30), pytest.approx(0.20), pytest.approx(2.0))


def test_provider_concentration_fires_when_thirty_percent_of_spend_moved(make_warehouse):
    rows = RawRows()
    for key, workspace, moved in (("a-web", "ws-alpha", 6.0), ("beta-api", "ws-beta", 5.98)):
        for day in DAYS:
            rows.key(day, key, workspace, last_used=day)
            other = moved if day == TODAY else 0.0
            rows.use(day, key, "vendor/m", "P1", requests=100, usage=20.0 - other)
            if other:
                rows.use(day, key, "vendor/m", "P2", requests=30, usage=other)
    warehouse = make_warehouse(rows)

    shifts = fired(warehouse, "provider_concentration")

    assert set(shifts) == {"project=alpha"}
    assert (shifts["project=alpha"]["observed_value"], shifts["project=alpha"]["impact_usd"]) == \
        (pytest.approx(0.30), pytest.approx(6.0))


def test_budget_threshold_fires_at_exactly_the_daily_budget(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", history((10, 1.0), (100, 10.0)))
    daily_use(rows, "beta-api", "ws-beta", history((10, 1.0), (100, 9.99)))
    warehouse = make_warehouse(rows)

    budgets = fired(warehouse, "budget_threshold")

    assert set(budgets) == {"project=alpha|period=daily"}
    assert budgets["project=alpha|period=daily"]["observed_value"] == pytest.approx(1.0)


def test_credit_runway_low_fires_below_seven_days_and_a_top_up_is_not_burn(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 10.0) for day in DAYS})
    # $10 a day; after the 4th day the balance is $70 (7.0 days). The 5th day burns $10 and tops up $9.90:
    # $69.90, 6.99 days.
    for index, day in enumerate(DAYS):
        rows.credit(day, 110.0 + (9.9 if day == TODAY else 0.0), 10.0 * (index + 1))
    warehouse = make_warehouse(rows)

    assert fired(warehouse, "credit_runway_low", DAYS[3]) == {}
    runway = fired(warehouse, "credit_runway_low")["account"]
    assert (runway["observed_value"], runway["impact_usd"]) == (pytest.approx(6.99), pytest.approx(0.10))


# ----- fallbacks ----------------------------------------------------------------------------------------------


def _fallback_days(warehouse: FixtureWarehouse, today: dict[str, tuple[int, int, int | None]]) -> None:
    """Three usual days (600 classified requests at 3%) per project, and today's (logged, fallbacks, traffic)."""
    with connect(warehouse.path) as con:
        con.execute("delete from marts.fct_fallback_daily")
        for project, (logged, fallbacks, traffic) in today.items():
            for day in DAYS[1:]:
                requests, fallback_requests = (logged, fallbacks) if day == TODAY else (200, 6)
                coverage = requests / traffic if traffic and day == TODAY else None
                con.execute(
                    "insert into marts.fct_fallback_daily (usage_date, project, workflow, requests, "
                    "classified_requests, fallback_requests, fallback_share, spend_usd, fallback_spend_usd, "
                    "fallback_extra_cost_usd, estimate_method, request_coverage_share, traffic_requests, "
                    "traffic_fallback_extra_cost_usd) values (?, ?, 'job', ?, ?, ?, ?, 1.0, 0.1, ?, 'census', ?, ?, ?)",
                    [day, project, requests, requests, fallback_requests, fallback_requests / requests,
                     0.002 * fallback_requests, coverage, traffic if coverage else None,
                     0.002 * fallback_requests / coverage if coverage else None])


def test_fallback_rate_rise_fires_when_the_lower_end_of_the_interval_clears_ten_points(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 5.0) for day in DAYS})
    daily_use(rows, "beta-api", "ws-beta", {day: (100, 5.0) for day in DAYS})
    warehouse = make_warehouse(rows)
    # Usually 3% (18 of 600). Today 150 classified requests: 28 fallbacks (18.7%, 95% lower bound 13.2%)
    # clear 3% + 10 pp; 27 (18.0%, lower bound 12.6%) do not.
    _fallback_days(warehouse, {"alpha": (150, 28, None), "beta": (150, 27, None)})

    rises = fired(warehouse, "fallback_rate_rise")

    assert set(rises) == {"project=alpha"}
    alpha = rises["project=alpha"]
    assert (alpha["observed_value"], alpha["expected_value"]) == (pytest.approx(28 / 150), pytest.approx(0.03))
    assert '"fallback_share_ci_low":0.132' in alpha["facts"].replace(" ", "")


def test_a_fallback_surge_on_150_logged_requests_of_a_large_project_is_news(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (4000, 40.0) for day in DAYS})
    daily_use(rows, "beta-api", "ws-beta", {day: (100, 5.0) for day in DAYS})
    warehouse = make_warehouse(rows)
    # The case: 3% → 39% in one day on 150 logged requests of 4,000 (no fixed 200-request floor any
    # more); a rise to 39% on 20 classified requests is below the 30-request floor.
    _fallback_days(warehouse, {"alpha": (150, 58, 4000), "beta": (20, 8, None)})

    rises = fired(warehouse, "fallback_rate_rise")

    assert set(rises) == {"project=alpha"}
    alpha = rises["project=alpha"]
    assert alpha["observed_value"] == pytest.approx(58 / 150)
    # Impact is scaled to the project's 4,000 requests: extra cost $0.116 on 150 logged → $3.09, less the
    # usual $0.00006 per request.
    assert alpha["impact_usd"] == pytest.approx(0.002 * 58 / (150 / 4000) - 0.002 * 18 / 600 * 4000)


# ----- runaway keys -------------------------------------------------------------------------------------------


def test_runaway_usage_without_an_accepted_result_signal_fires_at_five_times_the_usual_requests(make_warehouse):
    rows = RawRows()
    # Nightly batch keys: 400 requests for $2 a day, output in proportion to the requests (a loop that
    # repeats its work). a-batch runs 2,000 (5.0×, $10), beta-batch 1,996 (4.99×, $9.98).
    daily_use(rows, "a-batch", "ws-alpha", history((400, 2.0), (2000, 10.0)))
    daily_use(rows, "beta-batch", "ws-beta", history((400, 2.0), (1996, 9.98)))
    # a-new-model runs 5× too, but on a model it never used: a new workload, not a loop.
    daily_use(rows, "a-switch", "ws-alpha", {day: (400, 2.0) for day in DAYS[:-1]})
    daily_use(rows, "a-switch", "ws-alpha", {TODAY: (2000, 10.0)}, model="vendor/other")
    warehouse = make_warehouse(rows)

    runaway = fired(warehouse, "runaway_usage")

    assert [row["api_key_name"] for row in runaway.values()] == ["a-batch"]
    alpha = next(iter(runaway.values()))
    assert (alpha["observed_value"], alpha["expected_value"], alpha["threshold_value"]) == (2000, 400, 2000)
    assert alpha["impact_usd"] == pytest.approx(8.0)  # spend beyond the key's usual day: no waste measured
    facts = alpha["facts"].replace(" ", "")
    assert '"results_measure":"none"' in facts and '"impact_basis":"beyond_usual"' in facts
    assert '"output_ratio":5.0' in facts  # output followed the requests: it could not have told


def test_runaway_usage_with_verdicts_needs_min_verdicts_before_the_accepted_share_counts(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-batch", "ws-alpha", history((400, 2.0), (4000, 20.0)))
    daily_use(rows, "beta-batch", "ws-beta", history((400, 2.0), (4000, 20.0)))
    warehouse = make_warehouse(rows)
    hashes = {row["api_key_name"]: row["api_key_hash"] for row in warehouse.rows(
        "select distinct api_key_name, api_key_hash from marts.fct_daily_spend")}
    with connect(warehouse.path) as con:
        # Both keys' requests grew 10× with accepted results in proportion (all accepted): growth, not a loop,
        # once the verdicts count. alpha has 30 verdicts a day (min_verdicts), beta 29: beta has no
        # accepted-result signal, so its 10× multiple on its usual model pages.
        for name, verdicts in (("a-batch", 30), ("beta-batch", 29)):
            for day in DAYS:
                for index in range(verdicts):
                    con.execute(
                        "insert into marts.fct_generations (generation_id, created_at, usage_date, project, "
                        "workflow, api_key_hash, is_accepted) values (?, ?, ?, 'x', 'job', ?, true)",
                        [f"{name}-{day}-{index}", datetime.combine(day, datetime.min.time(), tzinfo=UTC), day,
                         hashes[name]])

    runaway = fired(warehouse, "runaway_usage")

    assert [row["api_key_name"] for row in runaway.values()] == ["beta-batch"]


# ----- ownership ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("unowned", "fires"), [(10.0, True), (9.99, False)], ids=["5.0%", "4.995%"])
def test_unowned_spend_fires_at_five_percent_of_the_account(make_warehouse, unowned, fires):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 190.0) for day in DAYS})
    daily_use(rows, "personal", None, {day: (10, unowned) for day in DAYS})
    warehouse = make_warehouse(rows)

    gaps = fired(warehouse, "unowned_spend")

    if fires:  # $50 of $1,000 over the 5 loaded days of the 7-day window
        assert set(gaps) == {"project=(unowned)"}
        assert (gaps["project=(unowned)"]["observed_value"], gaps["project=(unowned)"]["impact_usd"]) == \
            (pytest.approx(0.05), pytest.approx(50.0))
    else:
        assert gaps == {}


def test_a_new_unowned_key_is_news_the_first_day_it_spends_whatever_its_share(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 190.0) for day in DAYS})
    # created and first used on Thursday (3 loaded days before it), spends again on Friday
    daily_use(rows, "intern-laptop", None, {DAYS[3]: (1, 0.02), TODAY: (1, 0.02)}, created=DAYS[3])
    # created on Tuesday with only 1 loaded day before it: too little history to call anything new
    daily_use(rows, "early-bird", None, {DAYS[1]: (1, 0.02)}, created=DAYS[1])
    # created months ago, first seen on Thursday in a 4-day history: it may well have spent before
    daily_use(rows, "old-personal", None, {DAYS[3]: (1, 0.02)})
    warehouse = make_warehouse(rows)

    thursday = fired(warehouse, "unowned_spend", DAYS[3])

    assert [(row["api_key_name"], row["impact_usd"], row["metric"]) for row in thursday.values()] == \
        [("intern-laptop", pytest.approx(0.02), "new_unowned_key_spend_usd")]
    assert fired(warehouse, "unowned_spend", TODAY) == {}
    assert fired(warehouse, "unowned_spend", DAYS[1]) == {}


# ----- unused keys and data quality ---------------------------------------------------------------------------


def test_unused_key_fires_after_unused_key_days(make_warehouse):
    rows = RawRows()
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 1.0) for day in DAYS})
    for day in DAYS:  # idle since Monday; unused_key_days is 3 in the fixture owners.yaml
        rows.key(day, "a-idle", "ws-alpha", last_used=DAYS[0])
    warehouse = make_warehouse(rows)

    assert fired(warehouse, "unused_key", DAYS[2]) == {}  # idle 2 days
    idle = list(fired(warehouse, "unused_key", DAYS[3]).values())
    assert [(row["api_key_name"], row["observed_value"]) for row in idle] == [("a-idle", 3)]


@pytest.mark.parametrize(("status", "fires"), [("failed", True), ("passed", False)])
def test_data_quality_fires_on_a_failed_gate_only(make_warehouse, status, fires):
    warehouse = make_warehouse(daily_use(RawRows(), "a-web", "ws-alpha", {day: (100, 1.0) for day in DAYS}))
    _quality_run(warehouse, TODAY, status, datetime(2026, 3, 7, 1, tzinfo=UTC))
    assert bool(fired(warehouse, "data_quality")) is fires


# ----- one cause pages once -----------------------------------------------------------------------------------


def test_a_runaway_key_is_the_root_of_its_projects_spend_spike_and_budget_breach(make_warehouse):
    rows = RawRows()
    # alpha: a loop key (400 → 2,000 requests, $2 → $10, no verdicts) beside a steady $7 key: the project
    # goes from $9 to $17 (a 1.9× spike) and over its $10 daily budget. beta: a real spike, no loop.
    daily_use(rows, "a-batch", "ws-alpha", history((400, 2.0), (2000, 10.0)))
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 7.0) for day in DAYS})
    daily_use(rows, "beta-api", "ws-beta", history((100, 6.0), (200, 12.0)))
    warehouse = make_warehouse(rows)

    summary = alerts.evaluate_day(TODAY, "run-1", config_dir=warehouse.config_dir)
    ledger = {(a["rule_id"], a["project"]): a for a in warehouse.rows("select * from marts.fct_alerts")}

    root = ledger[("runaway_usage", "alpha")]
    # the account's spike too: $29 against $15 usual, $21 without the loop's $8 (threshold $22.50)
    linked = [ledger[("credit_burn_spike", "alpha")], ledger[("budget_threshold", "alpha")],
              ledger[("credit_burn_spike", "*")]]
    assert all(a["status"] == "fired" for a in ledger.values())
    assert [a["root_alert_id"] for a in linked] == [root["alert_id"]] * 3
    assert sorted(root["linked_alert_ids"]) == sorted(a["alert_id"] for a in linked)
    assert root["is_notified"] and not any(a["is_notified"] for a in linked)
    # The linked alerts are lines of the day's file (the day's open conditions), sent nowhere else.
    assert [a["channels"] for a in linked] == [["file"], ["file"], ["file"]]
    assert "Explains 3 other alert(s) of this day" in root["message"]
    # beta's own spike (and budget breach) has no runaway behind it: a root of its own, which carries beta's
    # budget breach (the excess $6 is what took the day over $10).
    beta_spike, beta_budget = ledger[("credit_burn_spike", "beta")], ledger[("budget_threshold", "beta")]
    assert (beta_spike["root_alert_id"], beta_spike["is_notified"]) == (None, True)
    assert (beta_budget["root_alert_id"], beta_budget["is_notified"]) == (beta_spike["alert_id"], False)
    # two causes, two notifications
    assert summary["notified"] == 2 and summary["linked"] == len(ledger) - 2 == 4
    deliveries = warehouse.rows("select alert_id, channel from marts.fct_alert_deliveries")
    assert {d["alert_id"] for d in deliveries if d["channel"] != "file"} == {root["alert_id"], beta_spike["alert_id"]}
    assert {d["alert_id"] for d in deliveries if d["channel"] == "file"} == {a["alert_id"] for a in ledger.values()}


def test_a_linked_alert_whose_cause_does_not_explain_it_stays_a_root(make_warehouse):
    rows = RawRows()
    # The loop adds $4 but alpha's other key alone is over budget ($12 of $10): the breach is not the loop's.
    daily_use(rows, "a-batch", "ws-alpha", history((400, 1.0), (2500, 6.25)))
    daily_use(rows, "a-web", "ws-alpha", {day: (100, 12.0) for day in DAYS})
    warehouse = make_warehouse(rows)

    alerts.evaluate_day(TODAY, "run-1", config_dir=warehouse.config_dir)
    ledger = {a["rule_id"]: a for a in warehouse.rows("select * from marts.fct_alerts where project = 'alpha'")}

    assert ledger["runaway_usage"]["linked_alert_ids"] == []
    assert (ledger["budget_threshold"]["root_alert_id"], ledger["budget_threshold"]["is_notified"]) == (None, True)


# ----- annotations explain a move only in the direction and size they announce --------------------------------


@pytest.mark.parametrize(("expected_change", "ratio", "explains"), [
    (None, 1.3, True), (None, 0.7, False),               # no size: any rise, never a fall
    (2.0, 2.0, True), (2.0, 1.42, True), (2.0, 4.0, True),  # a doubling explains ×1.41 .. ×4
    (2.0, 1.3, False), (2.0, 5.0, False), (2.0, 0.71, False),
    (0.5, 0.5, True), (0.5, 2.0, False),                 # an announced fall explains a fall only
    (2.0, None, True),                                   # a shift without direction (provider mix)
])
def test_annotation_explains_only_its_direction_and_roughly_its_size(expected_change, ratio, explains):
    assert annotation_explains(expected_change, ratio) is explains


RELEASE = """
annotations:
  - id: alpha-release
    kind: release
    start: 2026-03-06
    project: alpha
    signals: [spend]
    expected_change: 2.0
    description: Alpha 2.0 doubles spend
"""


@pytest.mark.parametrize(("today", "status"), [((200, 20.0), "suppressed"), ((500, 50.0), "fired")],
                         ids=["doubling-as-announced", "five-times"])
def test_a_release_that_announces_a_doubling_does_not_explain_five_times(make_warehouse, today, status):
    rows = daily_use(RawRows(), "a-web", "ws-alpha", history((100, 10.0), today))
    warehouse = make_warehouse(rows, annotations=RELEASE, owners=OWNERS)

    alerts.evaluate_day(TODAY, "run-1", config_dir=warehouse.config_dir)
    spike = warehouse.rows("select * from marts.fct_alerts where rule_id = 'credit_burn_spike'")[0]

    assert spike["status"] == status
    assert spike["annotation_ids"] == (["alpha-release"] if status == "suppressed" else [])
