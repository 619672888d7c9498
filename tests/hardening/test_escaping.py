"""Each channel's escaper on every hostile string: the channel's own parser gets back exactly the text."""

from __future__ import annotations

import csv
import io
from datetime import date

import duckdb
import hostile
import pytest
from inert import Page, live_formulas, render_markdown

from openrouter_spend import escaping
from openrouter_spend.reports.digest.tables import CsvTable

STRINGS = [*hostile.STRINGS, "plain name", "snake_case_name", "R&D", "", "a\nb\r\nc", "&lt;b&gt;", "=", "--"]


@pytest.mark.parametrize("text", STRINGS)
def test_html_round_trips_as_text(text):
    page = Page.of(f"<p title=\"{escaping.html(text)}\">{escaping.html(text)}</p>")
    assert page.tags == [("p", {"title": text})]
    assert page.visible_text == text


@pytest.mark.parametrize("text", STRINGS)
def test_slack_text_has_no_angle_brackets_and_reads_back(text):
    escaped = escaping.slack(text)
    assert "<" not in escaped and ">" not in escaped
    # Slack decodes exactly these three entities.
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


@pytest.mark.parametrize("text", STRINGS)
def test_markdown_renders_as_the_same_text_without_markup(text):
    rendered = render_markdown(f"| Name |\n|---|\n| {escaping.markdown(text)} |\n\n- {escaping.markdown(text)}\n")
    page = Page.of(rendered)
    assert {tag for tag, _ in page.tags} <= {"table", "thead", "tbody", "tr", "th", "td", "ul", "li"}
    one_line = " ".join(text.split()) if text.strip() else ""
    for cell in (page.visible_text.split("\n")):
        if cell.strip() and cell.strip() != "Name":
            assert " ".join(cell.split()) == one_line


def test_markdown_leaves_ordinary_names_readable():
    assert escaping.markdown("support-bot data_platform R&D (beta) 50%") == "support-bot data_platform R&D (beta) 50%"


@pytest.mark.parametrize("text", STRINGS)
def test_csv_cells_never_start_a_formula_and_numbers_stay_numbers(text):
    table = CsvTable("t.csv", "test", ("name", "amount", "names"), [{"name": text, "amount": -12.5,
                                                                     "names": [text, text]}])
    content = table.render().decode()
    assert live_formulas(content) == []
    row = list(csv.DictReader(io.StringIO(content)))[0]
    assert row["amount"] == "-12.5"
    assert row["name"].removeprefix("'") == text if text.startswith(escaping.CSV_FORMULA_TRIGGERS) \
        else row["name"] == text


def test_csv_cell_sql_matches_the_python_rule():
    with duckdb.connect() as con:
        for text in STRINGS:
            cell = con.execute(f"select {escaping.csv_cell_sql('v')} from (select ?::varchar as v)", [text]).fetchone()[0]
            assert cell == escaping.csv_cell(text)
        assert con.execute(f"select {escaping.csv_cell_sql('null::varchar')}").fetchone()[0] is None


@pytest.mark.parametrize("text", STRINGS)
def test_sql_literal_is_read_back_as_the_same_string(text):
    with duckdb.connect() as con:
        con.execute("create table t (name varchar)")
        con.execute("insert into t values (?)", [text])
        assert con.execute(f"select count(*) from t where name = {escaping.sql_literal(text)}").fetchone()[0] == 1
        assert con.execute("select count(*) from information_schema.tables").fetchone()[0] == 1


def test_mail_header_is_one_line():
    assert escaping.mail_header("Ann\r\nBcc: evil@evil.example\tX") == "Ann Bcc: evil@evil.example X"


def test_reproduce_sql_quotes_a_hostile_project():
    from openrouter_spend.alerts.render import reproduce_sql

    sql = reproduce_sql("budget_threshold", date(2026, 3, 2), hostile.PROJECT_SQL, None)
    assert escaping.sql_literal(hostile.PROJECT_SQL) in sql
    with duckdb.connect() as con:
        con.execute("create schema marts")
        con.execute("create table marts.rpt_budget_status_daily (usage_date date, project varchar)")
        con.execute("create table marts.fct_daily_spend (x int)")
        con.execute("insert into marts.rpt_budget_status_daily values ('2026-03-02', ?)", [hostile.PROJECT_SQL])
        assert con.execute(sql).fetchall() == [(date(2026, 3, 2), hostile.PROJECT_SQL)]
        assert con.execute("select count(*) from marts.fct_daily_spend").fetchone()[0] == 0
