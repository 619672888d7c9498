"""Data Docs open offline (no asset from another host, status icons as text) and list one row per usage day."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import duckdb
import pytest

from openrouter_spend.quality import docs

GX_PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" type="text/css" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<link rel="shortcut icon" href="../../../../static/images/favicon.ico"/>
<script>$(function () { $('#t').bootstrapTable({data: []}); });</script>
</head><body>
<a href="../../../../../index.html"><img class="NO-CACHE"
  src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20261206T120951Z" alt="GX"/></a>
<span class="h6">Status:</span> <i class="fas fa-times text-danger" aria-hidden="true"></i> Failed
<td><i class="fas fa-check-circle text-success" ></i></td>
</body></html>"""


@pytest.fixture
def page(tmp_path):
    path = tmp_path / "validations" / "quality" / "gate" / "2026-11-25" / "20261126T001000Z" / "warehouse-checks.html"
    path.parent.mkdir(parents=True)
    path.write_text(GX_PAGE)
    return path


def test_a_gx_page_loads_nothing_from_another_host_and_keeps_its_status(tmp_path, page):
    assert docs.make_offline(tmp_path) == 1
    text = page.read_text()
    assert not re.search(r'(?:src|href)="https?://', text)
    assert "<script" not in text  # GX's inline scripts call the libraries that no longer load
    assert '<link rel="stylesheet" href="../../../../../static/styles/offline.css">' in text
    assert 'src="../../../../../static/images/logo-long.png"' in text
    assert '<span class="ors-icon ors-fail" aria-hidden="true">✘</span> Failed' in text
    assert '<span class="ors-icon ors-pass" aria-hidden="true">✔</span>' in text
    assert 'href="../../../../static/images/favicon.ico"' in text  # local links untouched
    assert (tmp_path / "static" / "styles" / "offline.css").read_text().startswith("/*")
    # Pages already rewritten are left alone on the next build.
    assert docs.make_offline(tmp_path) == 0
    assert page.read_text() == text


def _ledger(con) -> None:
    con.execute("create schema marts")
    con.execute("create table marts.fct_quality_runs (run_id varchar, usage_date date, validated_at timestamptz, "
                "status varchar, expectation_count integer, failed_count integer, warning_count integer)")
    con.execute("create table marts.fct_quality_results (run_id varchar, usage_date date, check_id varchar, "
                "severity varchar, success boolean, message varchar)")
    runs = [("r1", date(2026, 11, 24), datetime(2026, 11, 25, 0, 10, tzinfo=UTC), "passed", 300, 0, 0),
            ("r2", date(2026, 11, 25), datetime(2026, 11, 26, 0, 10, tzinfo=UTC), "failed", 300, 1, 0),
            ("r3", date(2026, 11, 25), datetime(2026, 11, 26, 9, 0, tzinfo=UTC), "failed", 300, 1, 1)]
    con.executemany("insert into marts.fct_quality_runs values (?, ?, ?, ?, ?, ?, ?)", runs)
    con.executemany("insert into marts.fct_quality_results values (?, ?, ?, ?, ?, ?)", [
        ("r1", date(2026, 11, 24), "marts.x:grain_unique", "error", True, "ok"),
        ("r2", date(2026, 11, 25), "old:check", "error", False, "superseded"),
        ("r3", date(2026, 11, 25), "reconcile.credits:delta", "error", False, "credits <b>off</b> by $4.00"),
        ("r3", date(2026, 11, 25), "marts.x:row_count", "warning", False, "12 rows, usually 40")])


def test_the_index_lists_each_usage_day_once_with_its_newest_run_and_page(tmp_path, page):
    docs.make_offline(tmp_path)
    with duckdb.connect() as con:
        _ledger(con)
        index = docs.write_index(con, tmp_path)
    text = index.read_text()
    assert re.findall(r'<tr id="(day-[0-9-]+)"', text) == ["day-2026-11-25", "day-2026-11-24"]
    newest = text.split('id="day-2026-11-25"')[1].split('<tr id=')[0]
    assert "failed" in newest and "✘" in newest
    assert f'href="{page.relative_to(tmp_path).as_posix()}"' in newest
    assert "credits &lt;b&gt;off&lt;/b&gt; by $4.00" in newest  # messages are escaped
    assert "12 rows, usually 40" in newest and "superseded" not in text
    older = text.split('id="day-2026-11-24"')[1]
    assert "passed" in older and "no page" in older  # that day's GX page was pruned
    assert not re.search(r'(?:src|href)="https?://', text)
    assert docs.day_anchor(date(2026, 11, 25)) == "day-2026-11-25"
