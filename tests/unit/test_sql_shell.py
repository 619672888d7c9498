"""`openrouter-spend sql`: the analysts' read-only shell on the published copy, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    published = tmp_path / "published"
    published.mkdir()
    with duckdb.connect(str(published / "warehouse.duckdb")) as con:
        con.execute("create schema marts")
        con.execute("create table marts.fct_daily_spend (usage_date date, project varchar, spend_usd double)")
        con.execute("insert into marts.fct_daily_spend values ('2026-11-24', 'search', 12.5), "
                    "('2026-11-25', 'search', 7.25), ('2026-11-25', 'support', 3.0)")
    return tmp_path


def _sql(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENROUTER_SPEND_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "openrouter_spend.cli", "sql", *args], env=env, input=stdin or "",
                          capture_output=True, text=True, timeout=120)


def test_a_query_on_the_command_line_prints_its_result_from_the_published_copy(home):
    result = _sql(home, "select project, sum(spend_usd) as spend from marts.fct_daily_spend "
                        "group by 1 order by 1;", "--csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["project,spend", "search,19.75", "support,3.0"]


def test_statements_on_stdin_run_in_order_and_print_tables(home):
    result = _sql(home, stdin="select count(*) as days\nfrom marts.fct_daily_spend;\n"
                              "select max(usage_date) as newest from marts.fct_daily_spend;\n")
    assert result.returncode == 0, result.stderr
    assert "days" in result.stdout and "│     3 │" in result.stdout
    assert "2026-11-25" in result.stdout


def test_the_shell_cannot_change_the_published_copy(home):
    result = _sql(home, "delete from marts.fct_daily_spend;")
    assert result.returncode == 1
    assert "read-only" in result.stderr.lower()
    with duckdb.connect(str(home / "published" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_daily_spend").fetchone() == (3,)


def test_a_missing_published_copy_says_how_to_make_one(tmp_path):
    result = _sql(tmp_path, "select 1;")
    assert result.returncode == 2
    assert "no warehouse at" in result.stderr and "make run" in result.stderr


def test_dot_commands_list_and_describe_tables(home):
    from openrouter_spend.warehouse import shell

    class Output:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

    out = Output()
    with shell.open_read_only(home / "published" / "warehouse.duckdb") as con:
        state = {"csv": True}
        assert shell._dot_command(con, ".tables", out, state)
        assert shell._dot_command(con, ".describe marts.fct_daily_spend", out, state)
        assert shell._dot_command(con, ".describe x; drop table y", out, state)
        assert not shell._dot_command(con, ".quit", out, state)
    assert "marts,fct_daily_spend" in out.text
    assert "spend_usd,DOUBLE" in out.text
    assert "is not a table name" in out.text


def test_the_prompt_joins_lines_reports_errors_and_goes_on(home, monkeypatch):
    from openrouter_spend.warehouse import shell

    typed = iter(["select 1 as one", ";", "select from nowhere;", ".csv", "select 2 as two;", ".quit",
                  "select 'never read';"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))

    class Output:
        text = ""

        def write(self, text):
            Output.text += text

    path = home / "published" / "warehouse.duckdb"
    with shell.open_read_only(path) as con:
        shell.interactive(con, path, Output())
    assert "│     1 │" in Output.text
    assert "error: Parser Error" in Output.text
    assert "two\n2\n" in Output.text
    assert next(typed) == "select 'never read';"
