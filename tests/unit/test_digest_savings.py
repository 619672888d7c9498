"""The digest's Savings section from hand-written opportunities: rank, total, owner routing, labels, bounds."""

from __future__ import annotations

import json

import pytest
from marts_fixtures import DAY
from savings_fixtures import NOT_OPPORTUNITIES, OPPORTUNITIES, replace_opportunities, savings_warehouse

from openrouter_spend.reports.digest import render_day, savings
from openrouter_spend.warehouse import connect


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return savings_warehouse(tmp_path_factory.mktemp("digest-savings"))


@pytest.fixture(scope="module")
def rendered(warehouse):
    with connect(warehouse.path, read_only=True) as con:
        return render_day(con, DAY, "test warehouse")


def _read(warehouse) -> list[dict]:
    with connect(warehouse.path, read_only=True) as con:
        return savings.read(con, DAY)


def test_opportunities_are_ranked_by_monthly_dollars_and_routed_to_owners_or_projects(warehouse):
    found = _read(warehouse)
    assert [(row["monthly_saving_usd"], row["owner"]) for row in found] == [
        (40.0, "Ann Owner"), (25.0, "Bob Owner"), (12.0, "Ann Owner"), (8.0, "project gamma"), (5.0, "Ann Owner"),
        (3.0, "Bob Owner"), (1.5, "Ann Owner")]
    top = savings.summary(found)
    assert [row["monthly_saving_usd"] for row in top["top"]] == [40.0, 25.0, 12.0, 8.0, 5.0]
    assert (top["count"], top["more"], top["total_usd"], top["owners"]) == (7, 2, 94.5, 3)
    assert top["total_text"] == "up to $94.50 a month from 7 opportunities"
    assert top["more_text"] == "2 more in marts.rpt_savings_opportunities"


def test_a_price_drop_and_a_wholly_pinned_gap_are_neither_listed_nor_totalled(warehouse, tmp_path):
    copy = warehouse.copy_to(tmp_path / "copy")
    replace_opportunities(copy.path, OPPORTUNITIES + NOT_OPPORTUNITIES)
    with connect(copy.path, read_only=True) as con:
        assert con.execute("select count(*) from marts.rpt_savings_opportunities").fetchone()[0] == 9
        found = savings.read(con, DAY)
        files, summary = render_day(con, DAY, "test warehouse")
    assert [row["monthly_saving_usd"] for row in found] == [40.0, 25.0, 12.0, 8.0, 5.0, 3.0, 1.5]
    assert (summary["savings_opportunities"], summary["savings_monthly_usd"]) == (7, 94.5)
    assert "$30.00" not in files["digest.html"].decode().split('<section id="savings">')[1].split("</section>")[0]


def test_each_kind_has_its_label_and_an_unknown_kind_keeps_its_name(warehouse):
    labels = {row["opportunity_kind"]: row["label"] for row in _read(warehouse)}
    assert labels == {"prompt_caching": "Prompt caching", "price_change": "Price change",
                      "provider_price_spread": "Cheaper provider",
                      "premium_vs_standard": "Standard instead of premium", "batch_discount": "batch_discount"}


def test_the_figure_reads_by_its_bound_and_says_what_to_do(warehouse):
    by_saving = {row["monthly_saving_usd"]: row for row in _read(warehouse)}
    assert by_saving[40.0]["saving"] == "up to $40.00 a month"
    assert by_saving[40.0]["action"] == ("Turn on prompt caching for key a-web on vendor/pro: 25% of its prompt "
                                         "tokens came from the cache today (cache reads $0.3 vs $3 per 1M tokens).")
    assert by_saving[12.0]["saving"] == "about $12.00 a month ($9.00 to $15.00)"
    assert by_saving[12.0]["action"] == "Route vendor/pro to CheapCloud, a cheaper provider of the same model."
    assert by_saving[25.0]["saving"] == "about $25.00 a month"
    assert by_saving[25.0]["action"].startswith("vendor/pro got dearer on Fri 27 Feb: compare a cheaper model")
    assert by_saving[1.5]["action"].startswith("vendor/pro got dearer on Fri 20 Feb: compare a cheaper model")
    assert by_saving[5.0]["saving"] == "$5.00 a month"
    assert by_saving[5.0]["action"] == "See the batch_discount rows of marts.rpt_savings_opportunities for alpha."


def test_the_top_three_per_owner_with_each_owners_total(warehouse):
    owners = savings.per_owner(_read(warehouse))
    assert list(owners) == ["Ann Owner", "Bob Owner", "project gamma"]
    ann = owners["Ann Owner"]
    assert [row["monthly_saving_usd"] for row in ann["top"]] == [40.0, 12.0, 5.0]
    assert (ann["count"], ann["more"], ann["total_usd"], ann["projects"]) == (4, 1, 58.5, ["alpha"])
    assert [row["monthly_saving_usd"] for row in owners["Bob Owner"]["top"]] == [25.0, 3.0]
    assert owners["Bob Owner"]["more_text"] == ""
    gamma = owners["project gamma"]
    assert (gamma["budget_owner"], gamma["projects"], gamma["total_usd"]) == (None, ["gamma"], 8.0)


def test_the_html_and_markdown_digests_show_the_top_five_the_total_and_what_is_left(rendered):
    files, summary = rendered
    html = files["digest.html"].decode()
    section = html.split('<section id="savings">')[1].split("</section>")[0]
    assert section.count("<tr>\n") == 5 and '<tr class="total">' in section
    assert "In all up to $94.50 a month from 7 opportunities, for 3 owner(s)" in section
    assert "2 more in marts.rpt_savings_opportunities" in section
    assert section.index("up to $40.00") < section.index("about $25.00") < section.index("about $12.00") \
        < section.index("about $8.00")
    assert "about $12.00<span class=\"sub\">a month, $9.00 to $15.00</span>" in section
    assert '<span class="unexplained">no owner</span><span class="sub">gamma</span>' in section
    assert "Ann Owner<span class=\"sub\">alpha</span>" in section
    assert "<b>batch_discount</b>" in section and "$1.50" not in section
    assert '<div class="scroll"><table class="data">' in section  # the 600 px pane scrolls a wide table
    assert html.index('id="changes"') < html.index('id="savings"') < html.index('id="alerts"')

    markdown = files["digest.md"].decode()
    part = markdown.split("## 4. Savings")[1].split("## 5. Alerts")[0]
    assert "| Ann Owner | alpha | up to $40.00 a month | Prompt caching |" in part
    assert "| no owner | gamma | about $8.00 a month | Standard instead of premium |" in part
    assert "| Ann Owner | alpha | about $12.00 a month ($9.00 to $15.00) | Cheaper provider |" in part
    assert part.count("\n| ") == 5 + 1  # the header and the top five
    assert "2 more in marts.rpt\\_savings\\_opportunities." not in part  # snake_case stays readable
    assert "2 more in marts.rpt_savings_opportunities." in part

    assert (summary["savings_opportunities"], summary["savings_monthly_usd"]) == (7, 94.5)
    assert summary["savings_text"] == "up to $94.50 a month from 7 opportunities"
    assert json.loads(files["summary.json"])["savings_text"] == summary["savings_text"]


def test_a_day_without_opportunities_says_so(warehouse, tmp_path):
    copy = warehouse.copy_to(tmp_path / "copy")
    replace_opportunities(copy.path, [])
    with connect(copy.path, read_only=True) as con:
        files, summary = render_day(con, DAY, "test warehouse")
    html = files["digest.html"].decode().split('<section id="savings">')[1].split("</section>")[0]
    assert "No savings opportunity worth a cent a month on this day" in html and "<table" not in html
    assert "No savings opportunity worth a cent a month on this day." in files["digest.md"].decode()
    assert (summary["savings_opportunities"], summary["savings_monthly_usd"], summary["savings_text"]) == (0, 0.0, "")


def test_few_opportunities_have_no_left_over_line(warehouse, tmp_path):
    copy = warehouse.copy_to(tmp_path / "copy")
    replace_opportunities(copy.path, OPPORTUNITIES[:2])
    with connect(copy.path, read_only=True) as con:
        files, _ = render_day(con, DAY, "test warehouse")
    html = files["digest.html"].decode().split('<section id="savings">')[1].split("</section>")[0]
    assert "more in marts" not in html and html.count("<tr>\n") == 2
    assert "up to $65.00 a month from 2 opportunities" in html


def test_a_basis_shown_above_is_named_instead_of_repeated():
    rows = [{"monthly_saving_usd": saving, "bound_kind": "upper_bound", "owner": "o", "basis": basis}
            for saving, basis in ((9.0, "same method"), (8.0, "other method"), (7.0, "same method"))]
    assert [row["basis_shown_above"] for row in savings.summary(rows)["top"]] == [False, False, True]
