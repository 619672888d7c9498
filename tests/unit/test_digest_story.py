"""The digest's story on small synthetic worlds: a shift between projects is named as a project-mix effect,
one waste figure per day and segment everywhere, annotations explain only the direction and size they
announce, and the alerts a runaway key causes are shown with their root."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from marts_fixtures import OWNERS, FixtureWarehouse, RawRows
from test_rules_sql import write_rules

from openrouter_spend import alerts
from openrouter_spend.reports.digest import render_day
from openrouter_spend.reports.digest.data import collect
from openrouter_spend.warehouse import connect

DAY = date(2026, 3, 6)  # a Friday
DAYS = [DAY - timedelta(days=offset) for offset in range(4, -1, -1)]
PRIOR = DAYS[-2]

RELEASE = """
annotations:
  - id: alpha-release
    kind: release
    start: 2026-03-05
    end: 2026-03-10
    project: alpha
    signals: [spend]
    expected_change: 2.0
    description: Alpha 2.0 doubles spend
"""


def _use(rows: RawRows, day: date, key: str, workspace: str | None, requests: int, usage: float,
         completion_per_request: int = 100) -> None:
    rows.key(day, key, workspace, last_used=day)
    rows.use(day, key, "vendor/m", requests=requests, usage=usage, prompt=requests * 1000,
             completion=requests * completion_per_request)


def _build(tmp_path, rows: RawRows, **config) -> FixtureWarehouse:
    warehouse = FixtureWarehouse(tmp_path, **config)
    warehouse.load(rows)
    warehouse.build(DAYS)
    return warehouse


def _collect(warehouse: FixtureWarehouse, day: date = DAY):
    with connect(warehouse.path, read_only=True) as con:
        return collect(con, day, "test")


def test_a_shift_from_an_expensive_project_to_a_cheap_one_is_a_project_mix_effect(tmp_path):
    rows = RawRows()
    for day in DAYS:
        # alpha costs $0.20 a request, beta $0.02. Today requests rise 10% (200 → 220) but move to beta.
        _use(rows, day, "a-web", "ws-alpha", *((60, 12.0) if day == DAY else (100, 20.0)))
        _use(rows, day, "beta-api", "ws-beta", *((160, 3.2) if day == DAY else (100, 2.0)))
    warehouse = _build(tmp_path, rows)

    data = _collect(warehouse)
    account = next(c for c in data.changes if c["project"] == "*")

    effects = {name: account[f"{name}_effect_usd"] for name in ("volume", "project_mix", "context", "mix_price",
                                                                "waste")}
    assert account["delta_usd"] == pytest.approx(15.2 - 22.0)
    assert sum(effects.values()) == pytest.approx(account["delta_usd"], abs=1e-9)  # the identity holds exactly
    # Each project's cost per request is unchanged: no price effect. More requests (+10%) push spend up;
    # the move to the cheap project pulls it down by more.
    assert effects["mix_price"] == pytest.approx(0.0, abs=1e-9) and effects["context"] == pytest.approx(0.0, abs=1e-9)
    assert effects["volume"] > 0 and effects["project_mix"] < -abs(account["delta_usd"])
    files, _ = _render(warehouse)
    html = files["digest.html"].decode()
    assert "mostly traffic shifting to cheaper projects (−$" in html
    assert "cheaper models or providers" not in html
    assert b"project_mix_effect_usd" in files["top_movers.csv"]


def test_one_waste_figure_per_day_and_segment_everywhere(tmp_path, monkeypatch):
    rows = RawRows()
    for day in DAYS:
        # a loop: 10× the requests with no more output (1,000 completion tokens a day)
        looping = day == DAY
        _use(rows, day, "a-loop", "ws-alpha", 1000 if looping else 100, 10.0 if looping else 1.0,
             completion_per_request=1 if looping else 10)
        _use(rows, day, "a-web", "ws-alpha", 100, 5.0)
        _use(rows, day, "beta-api", "ws-beta", 100, 5.0 if day != DAY else 2.0)
    warehouse = _build(tmp_path, rows)
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    write_rules(warehouse.config_dir)
    for day in DAYS:
        alerts.evaluate_day(day, f"run-{day}", config_dir=warehouse.config_dir)

    data = _collect(warehouse)
    waste = data.waste[0]["wasted_spend_usd"]
    account = next(c for c in data.changes if c["project"] == "*")
    alpha = next(c for c in data.changes if c["project"] == "alpha")
    runaway = next(a for a in data.alerts if a["rule_id"] == "runaway_usage")
    economics = next(r for r in data.unit_economics if r["project"] == "alpha")

    assert waste == pytest.approx(9.0)  # 900 of 1,000 requests, $9 of $10
    assert account["wasted_spend_usd"] == alpha["wasted_spend_usd"] == economics["wasted_spend_usd"] == waste
    assert runaway["impact_usd"] == pytest.approx(waste)
    # The waste effect is the change of that figure (none the day before): never more than the waste itself
    # or than the looping project spent, even on a day when another project's spend fell.
    assert account["waste_effect_usd"] == pytest.approx(waste) == alpha["waste_effect_usd"]
    assert account["waste_effect_usd"] <= alpha["spend_usd"]
    assert account["delta_usd"] == pytest.approx(6.0)
    html = _render(warehouse)[0]["digest.html"].decode()
    assert html.count("$9.00") >= 4  # findings, the account line, the project table, Likely waste, the alert
    assert "more wasted spend on loops and duplicates (+$9.00)" in html


@pytest.mark.parametrize(("today", "explained"), [
    (20.0, True),    # ×2 the $10 before the release: as announced
    (14.2, True),    # ×1.42: roughly the announced size
    (50.0, False),   # ×5: far beyond it
], ids=["doubling", "a-bit-less", "five-times"])
def test_an_annotation_explains_a_rise_only_of_roughly_its_announced_size(tmp_path, today, explained):
    rows = RawRows()
    for day in DAYS:
        _use(rows, day, "a-web", "ws-alpha", 100, today if day == DAY else 10.0)
    warehouse = _build(tmp_path, rows, annotations=RELEASE)

    alpha = next(c for c in _collect(warehouse).changes if c["project"] == "alpha")

    assert [a["annotation_id"] for a in alpha["annotations"]] == (["alpha-release"] if explained else [])
    assert [a["annotation_id"] for a in alpha["annotations_against"]] == ([] if explained else ["alpha-release"])


def test_a_fall_during_a_release_that_announced_a_doubling_is_news(tmp_path):
    rows = RawRows()
    for day in DAYS:  # the release doubles alpha on Thursday ($10 → $20); on Friday it falls 29%
        _use(rows, day, "a-web", "ws-alpha", 100, {PRIOR: 20.0, DAY: 14.2}.get(day, 10.0))
    warehouse = _build(tmp_path, rows, annotations=RELEASE)

    data = _collect(warehouse)
    alpha = next(c for c in data.changes if c["project"] == "alpha")

    assert alpha["annotations"] == [] and [a["annotation_id"] for a in alpha["annotations_against"]] == \
        ["alpha-release"]
    assert any(f.text.startswith("alpha spent $5.80 less than the day before (−29%) although alpha-release "
                                 "announced about ×2") for f in data.findings)
    html = _render(warehouse)[0]["digest.html"].decode()
    assert "unexplained: alpha-release announced about ×2" in html
    # Thursday's doubling was the announced move: explained, not a finding.
    thursday = _collect(warehouse, PRIOR)
    assert [a["annotation_id"] for a in next(c for c in thursday.changes if c["project"] == "alpha")
            ["annotations"]] == ["alpha-release"]
    assert not [f for f in thursday.findings if "alpha spent" in f.text]


def test_the_alerts_a_runaway_key_causes_are_shown_with_their_root(tmp_path, monkeypatch):
    rows = RawRows()
    for day in DAYS:
        _use(rows, day, "a-batch", "ws-alpha", *((2000, 10.0) if day == DAY else (400, 2.0)))
        _use(rows, day, "a-web", "ws-alpha", 100, 7.0)
    warehouse = _build(tmp_path, rows, owners=OWNERS.replace("{daily: 10, weekly: 50, monthly: 200}",
                                                             "{daily: 10}"))
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    write_rules(warehouse.config_dir)
    alerts.evaluate_day(DAY, "run-1", config_dir=warehouse.config_dir)

    html = _render(warehouse)[0]["digest.html"].decode()
    findings = [(f.severity, f.text) for f in _collect(warehouse).findings]

    assert "root cause of 3 other alert(s) of the day" in html
    assert html.count("caused by runaway_usage (alpha); sent with it") == 3
    # "What needs attention" tells the same story: the loop, and the project's move pointing at it.
    assert ("critical", "Runaway usage: key a-batch (alpha) ran 5.0× its usual requests on 2026-03-06 (alert; it "
                        "also explains 3 other alert(s) of the day).") in findings
    assert any(text.startswith("alpha spent $8.00 more than the day before (+89%)")
               and text.endswith("; see the runaway_usage (key a-batch) alert.") for _, text in findings)


def _render(warehouse: FixtureWarehouse, day: date = DAY):
    with connect(warehouse.path, read_only=True) as con:
        return render_day(con, day, "test")
