"""The hostile world end to end: key and workspace names from the emulator and config values are injection
strings, poisoned request-log lines sit in the landing area, and a second run starts on the same home. The day
publishes, and every CSV, Slack payload, e-mail part and the Spend view shows the names as plain text."""

from __future__ import annotations

import csv
import email.message
import importlib.util
import io

import duckdb
import hostile
import pytest
from harness import DAY, POISONED_FILE, ROOT
from inert import Page, cells, live_formulas, render_markdown, slack_texts

from openrouter_emulator.scenarios import HOSTILE_NAMES

pytestmark = pytest.mark.slow


def _warehouse(run) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(run.home / "published" / "warehouse.duckdb"), read_only=True)


def test_the_day_publishes_with_the_poisoned_lines_quarantined(hostile_run):
    result = hostile_run.result
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{DAY}  ok" in result.stdout
    with _warehouse(hostile_run) as con:
        assert con.execute("select status from marts.fct_quality_runs where usage_date = ?", [DAY]).fetchall() \
            == [("passed",)]
        quarantined = con.execute("select source_file, line_number, reason from raw.request_log_quarantine "
                                  "where source_file = ? order by line_number", [POISONED_FILE]).fetchall()
        loaded = con.execute("select generation_id from raw.request_log where source_file = ?",
                             [POISONED_FILE]).fetchall()
        assert con.execute("select count(*) from marts.fct_generations where usage_date = ?", [DAY]).fetchone()[0] > 0
    assert [(line, reason.split(" ")[0]) for _, line, reason in quarantined] == [
        (1, "usage.cost"), (2, "created_at"), (3, "usage.prompt_tokens")]
    assert quarantined[0][2] == "usage.cost must be at most 10000, got 1e30"
    assert loaded == [("gen-fine-1",)]
    assert (hostile_run.home / "digests" / DAY.isoformat() / "digest.html").exists()
    assert (hostile_run.home / "focus" / f"{DAY}.csv").exists()


def test_a_second_run_on_the_same_home_is_refused_while_the_first_completes(hostile_run):
    refused = hostile_run.concurrent
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"is in use by openrouter-spend run (pid {hostile_run.holder_pid} " in refused.stderr
    assert "Running openrouter_spend_daily" not in refused.stdout
    assert hostile_run.result.returncode == 0
    assert (hostile_run.home / ".lock").read_text() == ""  # released when the first run ended


def _csv_files(run) -> list:
    files = sorted((run.home / "digests" / DAY.isoformat()).glob("*.csv")) + [run.home / "focus" / f"{DAY}.csv"]
    assert len(files) == 6
    return files


def test_no_csv_holds_a_live_formula_and_the_names_read_back(hostile_run):
    every_cell: set[str] = set()
    for path in _csv_files(hostile_run):
        text = path.read_text()
        assert live_formulas(text) == [], path.name
        every_cell |= cells(text)
    for name in (hostile.PROJECT_FORMULA, hostile.TEAM_FORMULA, hostile.OWNER_MARKUP, hostile.BILLING_ACCOUNT_NAME,
                 HOSTILE_NAMES["formula_link"], HOSTILE_NAMES["formula_dde"], HOSTILE_NAMES["formula_tab"]):
        assert "'" + name in every_cell, name  # shown as text: the quote is the spreadsheet's text marker
    owners = list(csv.DictReader(io.StringIO((hostile_run.home / "digests" / DAY.isoformat()
                                              / "spend_by_owner.csv").read_text())))
    assert all(float(row["spend_usd"]) > 0 for row in owners)  # numbers stay numbers


def test_the_focus_csv_stays_valid_focus(hostile_run):
    from openrouter_spend.reports import focus

    try:
        focus.ensure_validator()
    except focus.ValidatorUnavailable as exc:
        pytest.skip(f"FOCUS validator unavailable: {exc}")
    report = focus.validate_file(hostile_run.home / "focus" / f"{DAY}.csv")
    assert report.passed, report.summary()


def test_slack_payloads_cannot_ping_link_or_format_from_a_name(hostile_run):
    payloads = hostile_run.slack.payloads()
    assert {route for route in ("finops", "owners") if hostile_run.slack.payloads(route)} == {"finops", "owners"}
    texts = [text for payload in payloads for text in slack_texts(payload)]
    assert all("<" not in text and ">" not in text for text in texts), [t for t in texts if "<" in t][:3]
    joined = "\n".join(texts)
    assert "&lt;!channel&gt; Owner" in joined  # the owner's name, as text
    assert "project = '''; DROP TABLE marts.fct_daily_spend; --'" in joined
    assert hostile_run.slack.payloads("data-eng") == []  # nothing failed, nobody paged


def _parts(message: email.message.EmailMessage) -> list[email.message.EmailMessage]:
    return [part for part in message.walk() if not part.is_multipart()]


def test_every_email_part_shows_the_names_as_text(hostile_run):
    messages = hostile_run.inbox.messages
    digests = [m for m in messages if m["To"] == hostile_run.digest_to]
    alerts = [m for m in messages if m["To"] != hostile_run.digest_to]
    assert len(digests) == 1 and alerts
    for message in messages:
        assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert any(hostile.OWNER_BROADCAST in m["Subject"] for m in alerts)

    digest = digests[0]
    kinds = {part.get_content_type() for part in _parts(digest)}
    assert {"text/plain", "text/html", "text/csv", "image/png"} <= kinds
    for part in _parts(digest):
        kind = part.get_content_type()
        if kind == "text/html":
            page = Page.of(part.get_content())
            assert page.problems() == []
            assert hostile.OWNER_MARKUP in page.visible_text and HOSTILE_NAMES["slack_broadcast"] in page.visible_text
        elif kind == "text/plain":  # digest.md: rendered as Markdown (raw HTML allowed), nothing becomes markup
            page = Page.of(render_markdown(part.get_content()))
            assert page.problems() == []
            assert {tag for tag, _ in page.tags} <= {"h1", "h2", "h3", "p", "ul", "li", "strong", "em", "code",
                                                     "table", "thead", "tbody", "tr", "th", "td", "img"}
            assert all(attrs.get("src", "").startswith("charts/") for tag, attrs in page.tags if tag == "img")
            assert hostile.OWNER_MARKUP in page.visible_text and hostile.PROJECT_FORMULA in page.visible_text
        elif kind == "text/csv":
            assert live_formulas(part.get_content()) == [], part.get_filename()

    literal = "'''; DROP TABLE marts.fct_daily_spend; --'"
    notices = [m for m in alerts if m["Subject"].startswith("OpenRouter savings for ")]
    assert notices  # the weekly savings notice of the day's owners, by e-mail on the hostile routes
    for message in alerts:  # plain text: inert by construction; the Reproduce SQL is a literal
        body = message.get_content()
        assert message.get_content_type() == "text/plain"
        if hostile.PROJECT_SQL in body and message in notices:  # the savings notice lists its projects
            assert literal in body.rsplit("and project in (", 1)[1].split(") order by", 1)[0]
        elif hostile.PROJECT_SQL in body:
            assert f"project = {literal}" in body


def test_the_reproduce_sql_of_every_alert_runs_as_a_plain_query(hostile_run):
    with _warehouse(hostile_run) as con:
        messages = [m for (m,) in con.execute("select message from marts.fct_alerts where usage_date = ?",
                                              [DAY]).fetchall()]
        assert any(hostile.PROJECT_SQL in m for m in messages)
        for message in messages:
            sql = message.rsplit("Reproduce: ", 1)[1]
            con.execute(sql).fetchall()
        assert con.execute("select count(*) from marts.fct_daily_spend where usage_date = ?", [DAY]).fetchone()[0]


@pytest.fixture
def spend_view(hostile_run, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(hostile_run.home))
    spec = importlib.util.spec_from_file_location("spend_view_under_test", ROOT / "plugins" / "spend_view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.spend_app.dependency_overrides[module._reader] = lambda: None  # Airflow's login is tested elsewhere
    return TestClient(module.spend_app)


def test_the_spend_view_serves_the_names_as_text(spend_view, hostile_run):
    for url in ("/", f"/{DAY}/"):
        response = spend_view.get(url)
        assert response.status_code == 200
        page = Page.of(response.text)
        assert page.problems() == []
        assert hostile.PROJECT_FORMULA in page.visible_text and hostile.OWNER_MARKUP in page.visible_text
        assert HOSTILE_NAMES["slack_broadcast"] in page.visible_text
    listing = spend_view.get("/api/digests").json()
    assert any(hostile.PROJECT_FORMULA in finding["text"] for finding in listing[0]["findings"])
    csv_file = spend_view.get(f"/{DAY}/files/spend_by_owner.csv")
    assert csv_file.status_code == 200 and live_formulas(csv_file.text) == []
