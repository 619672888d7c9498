"""The limits world: a steady organisation whose planted events sit at the rules' detection limits
(docs/alerts.md), computed in-process from the synthetic organisation."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date, timedelta

import pytest

from openrouter_emulator.org import SyntheticOrg

ANCHOR = date(2026, 11, 26)
DAYS = [ANCHOR - timedelta(days=offset) for offset in range(7, 0, -1)]


@pytest.fixture(scope="module")
def world() -> SyntheticOrg:
    return SyntheticOrg("limits", 42, ANCHOR)


def _by_key(world: SyntheticOrg, day: date) -> tuple[dict[str, float], dict[str, int]]:
    spend, requests = defaultdict(float), defaultdict(int)
    for key, row in world.iter_key_rows(day):
        spend[key.name] += row.usage_nanos / 1e9
        requests[key.name] += row.requests
    return spend, requests


def test_the_events_are_planted_three_days_before_the_anchor(world):
    events = {event["event"]: event for event in world.events}
    assert set(events) == {"runaway_loop", "fallback_surge"}
    assert {events["runaway_loop"]["start_date"], events["fallback_surge"]["start_date"]} == {ANCHOR - timedelta(3)}
    assert "output tokens grow in proportion" in events["runaway_loop"]["description"]


def test_the_loop_runs_just_over_five_times_its_usual_requests_with_output_in_proportion(world):
    usual = [_by_key(world, day)[1]["nightly-report-batch"] for day in DAYS[:4]]
    spend, requests = _by_key(world, DAYS[4])
    ratio = requests["nightly-report-batch"] / statistics.median(usual)
    assert 5.0 < ratio < 5.4  # the rule's limit is 5×: at it, not far above
    rows = [row for key, row in world.iter_key_rows(DAYS[4]) if key.name == "nightly-report-batch"]
    usual_rows = [row for key, row in world.iter_key_rows(DAYS[0]) if key.name == "nightly-report-batch"]
    per_request = sum(r.completion_tokens for r in rows) / sum(r.requests for r in rows)
    usual_per_request = sum(r.completion_tokens for r in usual_rows) / sum(r.requests for r in usual_rows)
    assert per_request == pytest.approx(usual_per_request, rel=0.05)
    # no request log for data-platform: no accepted-result signal
    assert not [entry for entry in world.app_request_log(DAYS[4]) if entry["workflow"] == "nightly-report-batch"
                and world.world.request_logging.get(entry["project"])]


def test_the_fallback_surge_reaches_about_a_fifth_of_150_logged_search_requests(world):
    def shares(day):
        fallbacks = [len(record["provider_responses"]) > 1 for key, record in world.generations_with_keys(day)
                     if key.name == "search-answers-api"]
        return len(fallbacks), sum(fallbacks)

    usual = [shares(day) for day in DAYS[:4]]
    assert {logged for logged, _ in usual} == {150}
    assert sum(f for _, f in usual) / 600 < 0.05
    logged, fallbacks = shares(DAYS[4])
    assert (logged, fallbacks) == (150, 30)


def test_unowned_spend_holds_at_about_five_and_a_half_percent_and_a_new_key_appears(world):
    unowned = {"analyst-sandbox", "contractor-trial"}
    for day in DAYS:
        spend, _ = _by_key(world, day)
        share = sum(spend[name] for name in unowned) / sum(spend.values())
        assert 0.05 < share < 0.06, (day, share)
    assert [day for day in DAYS if _by_key(world, day)[0]["contractor-trial"] > 0] == DAYS[5:]
    assert world.key_by_name("contractor-trial").created_at.date() == DAYS[5]


def test_a_steady_key_barely_moves_from_day_to_day(world):
    daily = [_by_key(world, day)[0]["search-answers-api"] for day in DAYS]
    assert max(daily) / min(daily) < 1.1
