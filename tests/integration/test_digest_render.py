"""The finance digest of a realistic 14-day run: rendered in real headless Chromium, its CSVs checked against
the marts, and rendered twice to prove byte-identical output."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from digest_fixtures import ARTIFACTS, chromium, query, realistic_run, run_chromium

from openrouter_spend.reports import digest
from openrouter_spend.reports.digest.formatting import money

pytestmark = pytest.mark.slow

SECTIONS = ("Headline", "Owners and budget status", "What changed and why", "Savings", "Alerts",
            "Blind spots and data quality")
REPORT_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {chart: img.getAttribute('data-chart'), complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight};
  });
  var page = document.querySelector('.page');
  var report = document.createElement('script');
  report.type = 'application/json';
  report.id = 'digest-test-report';
  report.textContent = JSON.stringify({images: images, text: page.innerText,
                                       height: document.documentElement.scrollHeight});
  document.body.appendChild(report);
});
</script>"""


@pytest.fixture(scope="module")
def written(emulated_warehouse, tmp_path_factory):
    """The newest day's digest written into a fresh home from the run's published warehouse."""
    run = realistic_run(emulated_warehouse)
    home = run.fresh_home(tmp_path_factory.mktemp("digest") / "home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENROUTER_SPEND_HOME", str(home))
        for name in ("OPENROUTER_SPEND_DIGEST_EMAIL_TO", "OPENROUTER_SPEND_SMTP_HOST"):
            patch.delenv(name, raising=False)
        result = digest.write_day(run.newest_day)
    return run, home, result


def _warehouse(home: Path) -> Path:
    return home / "published" / "warehouse.duckdb"


def test_digest_renders_in_chromium_with_every_chart_loaded(written, tmp_path):
    run, home, result = written
    day = run.newest_day
    folder = Path(result["folder"])
    browser = chromium()
    probe = folder / "probe.html"
    probe.write_text((folder / "digest.html").read_text().replace("</body>", REPORT_SCRIPT + "</body>"))
    dumped = run_chromium(browser, tmp_path / "profile-dom", "--virtual-time-budget=15000", "--dump-dom",
                          probe.as_uri())
    probe.unlink()
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = re.search(r'<script type="application/json" id="digest-test-report">(.*?)</script>', dumped.stdout, re.S)
    assert match, "the page's load handler did not run: " + dumped.stdout[-500:]
    report = json.loads(match.group(1))

    charts = sorted(path.name for path in (folder / "charts").glob("*.png"))
    assert len(charts) >= 4
    assert sorted(image["chart"] for image in report["images"]) == charts
    for image in report["images"]:
        assert image["complete"] and image["width"] > 500 and image["height"] > 200, image

    text = report["text"]
    positions = [text.find(section) for section in SECTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions
    spend, byok = query(_warehouse(home), "select sum(spend_usd), sum(byok_spend_usd) from marts.fct_daily_spend "
                                          "where usage_date = ?", [day])[0]
    balance, runway, average = query(_warehouse(home), "select balance_usd, runway_days, burn_7d_avg_usd from "
                                                       "marts.fct_credit_balance where as_of_date = ?", [day])[0]
    assert money(spend) in text
    assert money(byok) in text
    assert money(balance) in text
    assert f"{runway:.1f} days" in text
    assert money(average) in text
    for (owner,) in query(_warehouse(home), "select distinct budget_owner from marts.rpt_budget_status_daily "
                                            "where usage_date = ?", [day]):
        assert owner in text
    fired = query(_warehouse(home), "select rule_id from marts.fct_alerts where usage_date = ? and status = 'fired'",
                  [day])
    if fired:
        assert all(rule_id in text for (rule_id,) in fired)
    else:
        assert "No alerts evaluated" in text or "Alert rules ran; none fired" in text
    quality = query(_warehouse(home), "select count(*) from information_schema.tables where table_schema = 'marts' "
                                      "and table_name = 'fct_quality_runs'")[0][0]
    runs = query(_warehouse(home), "select status from marts.fct_quality_runs where usage_date = ? "
                                   "order by validated_at desc limit 1", [day]) if quality else []
    if runs:
        assert f"Data-quality gate {runs[0][0]}" in text
    else:
        assert "The data-quality gate has not run for this day" in text
    assert "What needs attention" in text and "What the data cannot see" in text

    artifacts = ARTIFACTS / "digest"
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / f"digest-{day.isoformat()}.png"
    shot = run_chromium(browser, tmp_path / "profile-shot", f"--window-size=1000,{report['height'] + 40}",
                        f"--screenshot={screenshot}", (folder / "digest.html").as_uri())
    assert shot.returncode == 0 and screenshot.stat().st_size > 50_000, shot.stderr[-1000:]
    pdf = artifacts / f"digest-{day.isoformat()}.pdf"
    printed = run_chromium(browser, tmp_path / "profile-pdf", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                           (folder / "digest.html").as_uri())
    assert printed.returncode == 0, printed.stderr[-1000:]
    boxes = re.findall(rb"/MediaBox\s*\[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())
    assert boxes and all(abs(float(w) - 595) < 2 and abs(float(h) - 842) < 2 for w, h in boxes), boxes[:3]
    assert len(boxes) <= 8, f"the digest prints on {len(boxes)} A4 pages"


def _csv(folder: Path, name: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO((folder / name).read_text()))
    return list(reader.fieldnames or []), list(reader)


def _sum(rows: list[dict[str, str]], column: str) -> float:
    return sum(float(row[column]) for row in rows if row[column] != "")


def test_csv_headers_and_sums_match_the_marts(written):
    run, home, result = written
    day, folder, warehouse = run.newest_day, Path(result["folder"]), _warehouse(home)
    day_spend, month_spend = query(warehouse, """
        select sum(spend_usd) filter (where usage_date = ?), sum(spend_usd)
        from marts.fct_daily_spend where usage_date between date_trunc('month', cast(? as date)) and ?""",
                                   [day, day, day])[0]

    header, owners = _csv(folder, "spend_by_owner.csv")
    assert header[:7] == ["usage_date", "project", "team", "budget_owner", "budget_owner_contact", "status",
                          "spend_usd"]
    assert {"forecast_month_end_spend_usd", "monthly_budget_usd", "month_to_date_spend_usd"} <= set(header)
    assert {row["usage_date"] for row in owners} == {day.isoformat()}
    assert _sum(owners, "spend_usd") == pytest.approx(day_spend, abs=1e-4)
    assert _sum(owners, "month_to_date_spend_usd") == pytest.approx(month_spend, abs=1e-4)
    forecasts = dict(query(warehouse, "select project, forecast_month_end_spend_usd from "
                                      "marts.rpt_budget_status_daily where usage_date = ?", [day]))
    for row in owners:
        if row["project"] in forecasts:
            assert float(row["forecast_month_end_spend_usd"]) == pytest.approx(forecasts[row["project"]], abs=1e-5)

    header, movers = _csv(folder, "top_movers.csv")
    assert header[:6] == ["usage_date", "project", "budget_owner", "spend_usd", "prior_spend_usd", "delta_usd"]
    changes = {project: (delta, volume, context, mix, waste) for project, delta, volume, context, mix, waste in query(
        warehouse, "select project, delta_usd, volume_effect_usd, context_effect_usd, mix_price_effect_usd, "
                   "waste_effect_usd from marts.rpt_spend_change where usage_date = ?", [day])}
    assert {row["project"] for row in movers} == set(changes)
    for row in movers:
        if row["delta_usd"]:
            assert float(row["delta_usd"]) == pytest.approx(changes[row["project"]][0], abs=1e-5)
            effects = sum(float(row[c]) for c in ("volume_effect_usd", "project_mix_effect_usd", "context_effect_usd",
                                                   "mix_price_effect_usd", "waste_effect_usd"))
            assert effects == pytest.approx(float(row["delta_usd"]), abs=5e-5)

    header, alerts = _csv(folder, "alerts.csv")
    assert header[:3] == ["alert_id", "rule_id", "usage_date"] and "status" in header
    assert len(alerts) == query(warehouse, "select count(*) from marts.fct_alerts where usage_date = ?", [day])[0][0]

    header, mix = _csv(folder, "provider_mix.csv")
    assert header[:4] == ["usage_date", "project", "provider_name", "spend_usd"]
    assert _sum([row for row in mix if row["project"] == "*"], "spend_usd") == pytest.approx(day_spend, abs=1e-4)
    assert _sum([row for row in mix if row["project"] != "*"], "spend_usd") == pytest.approx(day_spend, abs=1e-4)

    header, economics = _csv(folder, "unit_economics.csv")
    assert header[:2] == ["usage_date", "project"] and "cost_per_request_usd" in header
    account = next(row for row in economics if row["project"] == "*")
    assert float(account["spend_usd"]) == pytest.approx(day_spend, abs=1e-5)
    requests = query(warehouse, "select sum(requests) from marts.fct_daily_spend where usage_date = ?", [day])[0][0]
    assert int(account["requests"]) == requests


def test_markdown_links_every_chart_and_repeats_the_headline(written):
    run, home, result = written
    folder = Path(result["folder"])
    text = (folder / "digest.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((charts/[^)]+)\)", text)
    assert sorted(linked) == sorted(f"charts/{p.name}" for p in (folder / "charts").glob("*.png"))
    assert f"**Spent:** {money(result['spend_usd'])}" in text
    positions = [text.find(f"## {i}. {section}") for i, section in enumerate(SECTIONS, start=1)]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)


def _fingerprints(home: Path) -> dict[str, str]:
    return {str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in (home / "digests", home / "focus") for path in sorted(folder.rglob("*")) if path.is_file()}


def test_same_marts_give_byte_identical_files(written, tmp_path):
    run, first_home, _ = written
    second_home = run.fresh_home(tmp_path / "another-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENROUTER_SPEND_HOME", str(second_home))
        patch.delenv("OPENROUTER_SPEND_DIGEST_EMAIL_TO", raising=False)
        digest.write_day(run.newest_day)
        rewritten = _fingerprints(second_home)
        digest.write_day(run.newest_day)
        assert _fingerprints(second_home) == rewritten
    first = _fingerprints(first_home)
    assert any(name.endswith(".png") for name in first) and any(name.endswith(".parquet") for name in first)
    assert rewritten == first
