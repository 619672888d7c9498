"""Every template on every hostile name: no channel lets a name become markup, a mention, a link, a formula or SQL.

The digest is rendered once with a plain name and once with each hostile one in every name field: the page's
elements and attributes (HTML) and the rendered Markdown's elements must be the same, so a name added text and
nothing else. Alerts go through every rule's template, Slack, e-mail and the "Reproduce:" queries.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from datetime import date
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import duckdb
import hostile
import jinja2
import pytest
from inert import Page, render_markdown, slack_texts

from openrouter_spend import escaping, rendering
from openrouter_spend.alerts import render as alert_render
from openrouter_spend.alerts.ledger import Quality
from openrouter_spend.reports.digest import html as digest_html
from openrouter_spend.reports.digest import markdown as digest_markdown
from openrouter_spend.reports.digest.charts import Chart
from openrouter_spend.reports.digest.data import DigestData, Finding
from openrouter_spend.reports.digest.savings import described, per_owner
from openrouter_spend.reports.digest.tables import CsvTable

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 3, 2)
PLAIN = "plain name"
STRINGS = [*hostile.STRINGS, "line\nbreak <i>x</i>", "_emphasis_ *strong*"]
CHART_NAMES = ("spend_by_project.png", "burn_and_runway.png", "provider_mix.png", "premium_share.png",
               "fallback_share.png")


def _annotation(name: str) -> dict:
    return {"annotation_id": name, "kind": name, "description": name, "expected_change": 2.0}


def _savings(name: str) -> list[dict]:
    """Every kind of savings opportunity, and one of a kind named `name`, with `name` wherever a person names it."""
    common = {"project": name, "budget_owner": name, "model": name, "api_key_name": name, "api_key_hash": "h1",
              "provider_name": name, "basis": name, "price_changed_on": DAY}
    kinds = [("prompt_caching", "upper_bound", {"cached_share": 0.25, "prompt_price_per_mtok_usd": 3.0,
                                                "cache_read_price_per_mtok_usd": 0.3}),
             ("price_change", "estimate", {"price_direction": "rise"}),
             ("price_change", "estimate", {"price_direction": "drop"}),
             ("provider_price_spread", "estimate", {"monthly_saving_low_usd": 1.0, "monthly_saving_high_usd": 3.0}),
             ("premium_vs_standard", "estimate", {"budget_owner": None}),
             (name, "exact", {})]
    return [described({**common, "opportunity_kind": kind, "bound_kind": bound, "monthly_saving_usd": 60.0 - 10 * i,
                       **extra}) for i, (kind, bound, extra) in enumerate(kinds)]


def _digest(name: str) -> DigestData:
    """A day with every section of the digest shown and `name` in every field a person names."""
    budget = {"project": name, "team": name, "budget_owner": name, "spend_usd": 15.0, "month_to_date_spend_usd": 39.0,
              "week_to_date_spend_usd": 39.0, "velocity_multiplier": 2.0, "effective_daily_budget_usd": 10.0,
              "effective_monthly_budget_usd": 200.0, "daily_budget_used_ratio": 1.5,
              "forecast_month_end_spend_usd": 234.0, "forecast_monthly_budget_ratio": 1.17, "status": "over"}
    change = {"spend_usd": 17.0, "prior_spend_usd": 11.0, "delta_usd": 6.0, "volume_effect_usd": 4.0,
              "context_effect_usd": -1.0, "mix_price_effect_usd": 1.0, "waste_effect_usd": 2.0,
              "wasted_spend_usd": 9.0, "prior_week_spend_usd": 12.0, "wow_delta_usd": 5.0, "wow_volume_effect_usd": 5.0,
              "budget_owner": name, "annotations": [], "annotations_against": []}
    premium = {"spend_usd": 17.0, "premium_spend_usd": 8.0, "premium_spend_share": 0.5,
               "premium_spend_share_baseline_28d": 0.2, "premium_spend_share_change": 0.3}
    alert = {"alert_id": "alt_1", "rule_id": "runaway_usage", "status": "fired", "severity": "critical",
             "project": name, "budget_owner": name, "metric": "requests", "observed_value": 1000.0,
             "expected_value": 0.5, "impact_usd": 9.0, "explanation": name, "root_alert_id": None}
    caused = {**alert, "alert_id": "alt_2", "explanation": None, "root_alert_id": "alt_1"}
    return DigestData(
        day=DAY, source=name, has_data=True,
        balance={"balance_usd": 100.0, "burn_7d_avg_usd": 20.0, "runway_days": 5.0, "topup_usd": 50.0,
                 "projected_depletion_date": date(2026, 3, 7)},
        totals={"spend_usd": 17.0, "byok_spend_usd": 3.0, "requests": 1200, "active_keys": 3},
        month={"month_to_date_usd": 61.0, "days_elapsed": 2, "loaded_days": 2, "configured_forecast_usd": 366.0},
        budgets=[budget, {**budget, "project": "(unowned)", "status": "no_owner"}],
        changes=[{**change, "project": "*"},
                 {**change, "project": name, "annotations": [_annotation(name)]},
                 {**change, "project": name + " 2", "annotations_against": [_annotation(name)]}],
        premium=[{**premium, "project": "*"}, {**premium, "project": name, "annotations": [_annotation(name)]}],
        provider_mix=[{"project": "*", "provider_name": name, "spend_share": 0.7, "spend_share_change_7d": 0.2}],
        provider_shifts=[{"project": name, "provider_name": name, "spend_share": 0.7, "spend_share_change_7d": 0.2,
                          "annotations": [_annotation(name)]}],
        unit_economics=[], alerts=[alert, caused], alerts_state="fired", alert_columns=[],
        quality={"run_id": name, "failed_count": 1, "summary": name,
                 "failed_checks": [{"severity": name, "check_id": name, "message": name, "description": name}]},
        quality_state="failed",
        blind_spot_rows=[{"project": name, "spend_usd": 17.0, "byok_spend_share": 0.1,
                          "per_request_request_coverage_share": 0.5, "unattributed_spend_usd": 1.0,
                          "blind_spots": [name, name]}],
        blind_spots=[name],
        waste=[{"api_key_name": name, "api_key_hash": "h1", "project": name, "request_ratio": 10.0, "spend_usd": 10.0,
                "wasted_spend_usd": 9.0, "waste_method": "per_request", "wasted_spend_ci_low_usd": 8.0,
                "wasted_spend_ci_high_usd": 9.5, "per_request_requests": 100, "per_request_coverage_share": 0.5}],
        unowned_keys=[{"api_key": name, "workspace_name": name, "spend_usd": 2.0, "requests": 10}],
        unused_keys=[{"api_key_name": name, "project": name}],
        fallback=[{"project": name, "requests": 100, "logged_requests": 50, "coverage_share": 0.5, "is_census": False,
                   "fallback_share": 0.1, "fallback_share_ci_low": 0.05, "fallback_share_ci_high": 0.2,
                   "fallback_spend_usd": 1.0, "fallback_spend_usd_ci": (0.5, 1.5), "fallback_extra_cost_usd": 0.5,
                   "fallback_extra_cost_usd_ci": (0.2, 0.8)}],
        balance_trend=[{"as_of_date": DAY, "topup_usd": 50.0}],
        findings=[Finding("critical", name, name), Finding("info", name)],
        savings=_savings(name),
    )


def _charts(name: str) -> list[Chart]:
    return [Chart(chart, b"\x89PNG", f"{chart}: {name}") for chart in CHART_NAMES]


def _tables() -> list[CsvTable]:
    return [CsvTable("spend_by_owner.csv", "Spend per project ('*' = the account).", ("project",), [])]


@cache
def _spend_view():
    """The Airflow plugin module (plugins/ is not a package)."""
    spec = importlib.util.spec_from_file_location("spend_view", ROOT / "plugins" / "spend_view.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _structure(page: Page) -> list[tuple[str, tuple[str, ...]]]:
    return [(tag, tuple(sorted(attrs))) for tag, attrs in page.tags]


@pytest.mark.parametrize("name", STRINGS)
def test_the_html_digest_shows_every_name_as_text_and_nothing_more(name):
    plain = Page.of(digest_html.render(_digest(PLAIN), _charts(PLAIN), _tables()))
    html = digest_html.render(_digest(name), _charts(name), _tables())
    page = Page.of(html)
    assert page.problems() == []
    assert "<script" not in html.lower()
    # Same elements with the same attributes: no name opened an element or left an attribute unclosed.
    assert _structure(page) == _structure(plain)
    assert name in page.visible_text
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert sorted(image["alt"] for image in images) == sorted(f"{chart}: {name}" for chart in CHART_NAMES)


@pytest.mark.parametrize("name", STRINGS)
def test_the_markdown_digest_has_no_markup_links_or_images_from_a_name(name):
    plain = Page.of(render_markdown(digest_markdown.render(_digest(PLAIN), _charts(PLAIN), _tables())))
    page = Page.of(render_markdown(digest_markdown.render(_digest(name), _charts(name), _tables())))
    assert page.problems() == []
    assert _structure(page) == _structure(plain)
    assert not [attrs for tag, attrs in page.tags if tag == "a"]
    assert sorted(attrs["src"] for tag, attrs in page.tags if tag == "img") == sorted(f"charts/{c}" for c in CHART_NAMES)
    assert " ".join(name.split()) in " ".join(page.visible_text.split())


# One alert per rule template (and one for a rule without a template), its facts naming `name` where they can.
RULE_FACTS = {
    "credit_runway_low": {"balance_usd": 120.5, "burn_7d_avg_usd": 30.25, "projected_depletion_date": DAY},
    "credit_burn_spike": {"ratio": 2.5, "request_ratio": 2.0, "tokens_per_request_ratio": 1.1, "usage_effect_usd": 3.0,
                          "mix_price_usd": 1.0, "keys_rising": 2, "keys_compared": 5, "waste_usd": 4.0,
                          "new_key_spend_usd": 2.0, "explained_projects_left_out": ["{name}"]},
    "premium_share_rise": {"premium_spend_usd": 40.0, "expected_premium_spend_usd": 20.0},
    "provider_concentration": {"spend_usd": 100.0, "top_provider": "{name}", "top_provider_share": 0.7,
                               "usual_top_provider": "{name}", "usual_top_provider_share": 0.5, "hhi": 0.5,
                               "usual_hhi": 0.3},
    "fallback_rate_rise": {"fallback_requests": 10, "requests": 100, "fallback_extra_cost_usd": 1.0},
    "budget_threshold": {"period": "monthly", "period_start": DAY, "spend_usd": 50.0, "effective_budget_usd": 40.0,
                         "budget_multiplier": 1.5, "budget_usd": 30.0, "forecast_month_end_usd": 900.0},
    "unowned_spend": {"finding": "new_key", "workspace": "{name}", "created_date": DAY, "requests": 1234,
                      "lookback_days": 30},
    "runaway_usage": {"results_measure": "none", "verdicts": 0, "usual_model_share": 0.9, "request_ratio": 5.0,
                      "output_ratio": 4.5, "impact_basis": "measured_waste", "requests": 5000, "norm_requests": 1000},
    "unused_key": {"never_used": True, "created_date": DAY, "limit_usd": 25.0},
    "data_quality": {"summary": "{name}", "run_id": "{name}"},
    "a_rule_without_template": {},
}


def _alert(name: str, rule_id: str) -> dict:
    facts = {key: value.replace("{name}", name) if isinstance(value, str) else
             [item.replace("{name}", name) for item in value] if isinstance(value, list) else value
             for key, value in RULE_FACTS[rule_id].items()}
    return {"alert_id": "alt_1", "rule_id": rule_id, "usage_date": DAY, "severity": "critical",
            "base_severity": "warning", "occurrence": "escalated", "status": "suppressed", "explanation": name,
            "signal": name, "project": name, "api_key_name": name, "api_key_hash": "h1'x", "model": name,
            "workflow": name, "metric": "m", "observed_value": 3.5, "expected_value": 1.25, "impact_usd": 12.0,
            "threshold_value": 3.0, "window_start": DAY, "window_end": date(2026, 3, 3), "baseline_start": DAY,
            "baseline_end": DAY, "history_days": 7, "first_seen_date": DAY, "days_active": 2, "facts": facts,
            "contributors": [{"dimension": "key", "name": name, "impact_usd": 3.0, "spend_usd": 4.0, "share": 0.5,
                              "usual_share": 0.1, "requests": 10, "is_new_key": True}]}


def _messages(name: str) -> list[tuple[str, str]]:
    owner = {"budget_owner": name, "team": name, "contact": name}
    return [alert_render.render(_alert(name, rule_id), None, owner, Quality("failed", name, True))
            for rule_id in RULE_FACTS]


@pytest.mark.parametrize("name", STRINGS)
def test_alert_texts_carry_the_name_verbatim(name):
    for title, body in _messages(name):
        assert body.startswith(title + "\n\n")
        assert f"Budget owner: {name} ({name}, {name})" in body


def test_every_alert_says_who_acts_and_what_to_do():
    for rule_id, (_, body) in zip(RULE_FACTS, _messages(PLAIN), strict=True):
        action = next((line for line in body.splitlines() if line.startswith("Action: ")), None)
        assert action is not None and len(action) > len("Action: ") + 20, rule_id
        assert "Top contributors: key " in body, rule_id


@pytest.mark.parametrize("name", STRINGS)
def test_slack_texts_have_no_mention_broadcast_or_link_from_a_name(name):
    rows = [{"alert_id": f"alt_{i}", "severity": "critical", "budget_owner": name, "message": body}
            for i, (_, body) in enumerate(_messages(name))]
    payload = alert_render.slack_payload(SimpleNamespace(name=name), DAY, rows)
    texts = slack_texts(payload)
    assert len(texts) == 2 + len(rows) + 1  # the message text, the header, one section per alert, the context
    for text in texts:
        assert "<" not in text and ">" not in text  # no <!channel>, <@U…>, <http…|…>
    decoded = texts[-1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert decoded.startswith(f"route `{name}`")


@pytest.mark.parametrize("name", STRINGS)
def test_the_email_subject_is_one_header_line_and_the_body_keeps_the_text(name):
    rows = [{"alert_id": "alt_1", "severity": "critical", "budget_owner": name, "message": body}
            for _, body in _messages(name)[:2]]
    subject, body = alert_render.email_content(SimpleNamespace(name=name), DAY, rows)
    assert not any(ord(c) < 32 or c == "\x7f" for c in subject)
    assert subject.endswith(": " + escaping.mail_header(name)) or not escaping.mail_header(name)
    assert rows[0]["message"] in body and f"(route {name})" in body


def _unused_key(name: str, number: int, severity: str) -> dict:
    return {**_alert(name, "unused_key"), "alert_id": f"alt_{number}", "severity": severity, "occurrence": "new",
            "budget_owner": name, "is_notified": True, "message": f"m{number}\nReproduce: select 1"}


@pytest.mark.parametrize("name", STRINGS)
def test_a_key_notice_lists_each_key_verbatim_and_reaches_slack_escaped(name):
    from openrouter_spend.alerts import key_notices

    alerts = [_unused_key(name, 1, "info"), _unused_key(name, 2, "warning")]
    key_notices.bundle_per_owner(alerts, ["info", "warning", "critical"].index)
    carrier, listed = alerts[1], alerts[0]
    assert carrier["message"].startswith(carrier["title"] + "\n\n2 enabled key(s)")
    assert carrier["message"].count(f"- {name} ({name}): idle 4 days") == 2
    assert listed["message"] == f"m1\nListed in the notice to {name} (alert alt_2); sent with it.\nReproduce: select 1"
    payload = alert_render.slack_payload(SimpleNamespace(name="r"), DAY, [carrier])
    assert not [text for text in slack_texts(payload) if "<" in text or ">" in text]


@pytest.mark.parametrize("name", STRINGS)
def test_a_savings_notice_keeps_names_verbatim_and_reaches_slack_mail_and_sql_escaped(name):
    from openrouter_spend.alerts import savings_notices

    (owner, listed), *others = per_owner(_savings(name)).items()
    notice = savings_notices.build_notice(DAY, owner, listed, name)
    assert owner == name and notice["title"].startswith(f"[INFO] Savings for {name}: up to $")
    assert notice["message"].startswith(notice["title"] + "\n\n")
    assert f"1. Prompt caching, {name}: up to $60.00 a month. Turn on prompt caching for key {name} on {name}" \
        in notice["message"]
    assert f"   Basis: {name}\n" in notice["message"]
    assert "And 2 more in marts.rpt_savings_opportunities." in notice["message"]
    query = notice["message"].rsplit("Every opportunity: ", 1)[1]
    with duckdb.connect() as con:
        con.execute("create schema marts")
        con.execute("create table marts.rpt_savings_opportunities (usage_date date, project varchar, "
                    "monthly_saving_usd double)")
        con.execute("insert into marts.rpt_savings_opportunities values (?, ?, 1.0)", [DAY, name])
        assert con.execute(query).fetchall() == [(DAY, name, 1.0)]
    payload = savings_notices.slack_payload(notice)
    assert not [text for text in slack_texts(payload) if "<" in text or ">" in text]
    subject = savings_notices.email_subject(notice)
    assert not any(ord(c) < 32 or c == "\x7f" for c in subject)
    assert subject.startswith("OpenRouter savings for " + escaping.mail_header(name))
    assert [entry[0] for entry in others] == [f"project {name}"]


def test_the_digest_subject_is_one_header_line():
    from openrouter_spend.reports.digest import subject

    text = subject({"day": "2026-03-02", "spend_usd": 12.5, "burn_7d_avg_usd": 10.0, "runway_days": 3.25,
                    "alerts_fired": 2})
    assert text == "OpenRouter spend 2026-03-02: $12.50 (+25% vs 7-day average), runway 3.2 days, 2 alert(s)"


@pytest.mark.parametrize("name", STRINGS)
def test_the_cli_summary_prints_names_as_plain_text_in_their_columns(name, tmp_path):
    (tmp_path / "warehouse.duckdb").touch()
    paths = SimpleNamespace(warehouse=tmp_path / "warehouse.duckdb", published=tmp_path / "published",
                            digests=tmp_path / "digests", home=tmp_path, alerts=tmp_path / "alerts",
                            quality=tmp_path / "quality")
    text = rendering.render("reports/summary.txt.j2", paths=paths, landing=tmp_path / "landing",
                            counts={"marts.fct_daily_spend": 1234}, width=20, spend_rows=[(DAY, 1.5, 0.25, 10, 2)],
                            balance=(DAY, 100.0, 2.0, 1.5, 66.7), projects=[(name, None, 1.5)], gaps=[])
    assert f"\n  {name:<24} {'no owner':<20} $      1.50\n" in text
    assert "  2026-03-02          1.50        0.25          10      2\n" in text
    assert text.endswith(f"quality    {tmp_path / 'quality' / 'docs' / 'index.html'}")


def test_the_cli_summary_without_a_warehouse_says_how_to_make_one(tmp_path):
    text = rendering.render("reports/summary.txt.j2", paths=SimpleNamespace(warehouse=tmp_path / "none.duckdb"))
    assert text == f"No warehouse yet at {tmp_path / 'none.duckdb'}; run `openrouter-spend run` first."


@pytest.mark.parametrize("name", STRINGS)
def test_blind_spot_sentences_keep_a_dataset_and_reason_verbatim(name):
    from openrouter_spend.reports.digest.blind_spots import SENTENCES, sample_label

    blocks = list(rendering.environment("text").get_template(SENTENCES).blocks)
    sentences = rendering.render_blocks(
        SENTENCES, tuple(blocks), coverage=0.0042, byok=1234.5, logged=12, requests=1000, missing=1, days_elapsed=5,
        gap_days=[DAY], unattributed=2.5, pending=3, dataset=name, reason=name)
    assert sentences["skipped"] == f"{name}: {name}."
    assert sentences["sampled"].startswith("Per-request figures come from a sample: 12 logged of 1,000 requests "
                                           "(1.2% of requests, 0.42% of spend).")
    assert sample_label(0.5) == "per-request figures from a 50% sample of requests"
    assert all(sentence.strip() == sentence and "\n" not in sentence
               for block, sentence in sentences.items() if block != "skipped")


REPRODUCED = [rule for rule in RULE_FACTS if rendering.has_template(f"alerts/reproduce/{rule}.sql.j2")]


@pytest.mark.parametrize("name", STRINGS)
def test_every_reproduce_query_keeps_a_name_a_string_literal(name):
    with duckdb.connect() as con:
        con.execute("create schema marts")
        tables = {"fct_credit_balance", "rpt_spend_change", "rpt_unit_economics_daily", "fct_provider_mix_daily",
                  "fct_fallback_daily", "rpt_budget_status_daily", "fct_daily_spend", "rpt_key_usage_daily",
                  "dim_api_key", "fct_quality_results"}
        for table in tables:
            con.execute(f"create table marts.{table} (usage_date date, as_of_date date, project varchar, "
                        "api_key_hash varchar, is_owned boolean, success boolean)")
            con.execute(f"insert into marts.{table} values (?, ?, ?, ?, false, false)", [DAY, DAY, name, name])
        for rule in REPRODUCED:
            sql = alert_render.reproduce_sql(rule, DAY, name, name)
            assert "'" + name.replace("'", "''") + "'" in sql or name not in sql
            assert len(con.execute(sql).fetchall()) == 1, sql
        assert con.execute("select count(*) from information_schema.tables").fetchone()[0] == len(tables)


@pytest.mark.parametrize("name", STRINGS)
def test_a_csv_cell_from_a_template_never_starts_a_formula(name):
    cell = rendering.environment("text").from_string("{{ name|csv_cell }}").render(name=name)
    assert not cell.startswith(escaping.CSV_FORMULA_TRIGGERS)
    assert cell == ("'" + name if name.startswith(escaping.CSV_FORMULA_TRIGGERS) else name)


@pytest.mark.parametrize(("channel", "escaper", "filter_name"), [
    ("html", escaping.html, "html"), ("markdown", escaping.markdown, "markdown"), ("slack", escaping.slack, "slack"),
    ("mail_header", escaping.mail_header, "mail_header"), ("sql", escaping.sql_literal, "sql_literal")])
def test_each_channel_escapes_every_value_by_default_with_its_rule_from_escaping(channel, escaper, filter_name):
    environment = rendering.environment(channel)
    for name in STRINGS:
        assert environment.from_string("{{ name }}").render(name=name) == escaper(name)
        # The explicit filter gives the same text, never escaped twice.
        assert environment.from_string(f"{{{{ name|{filter_name} }}}}").render(name=name) == escaper(name)


@pytest.mark.parametrize("name", STRINGS)
def test_the_data_docs_index_shows_a_check_message_as_text(name):
    from datetime import UTC, date, datetime

    def index(text: str) -> str:
        return rendering.render("quality/index.html.j2", days=[{
            "usage_date": date(2026, 3, 2), "run_id": "r1", "validated_at": datetime(2026, 3, 3, tzinfo=UTC),
            "status": "failed", "expectation_count": 3, "failed_count": 1, "warning_count": 0,
            "page": "validations/quality/gate/2026-03-02/t/warehouse-checks.html",
            "problems": [{"check_id": text, "severity": "error", "message": text}]}])

    page = Page.of(index(name))
    assert page.problems() == []
    assert _structure(page) == _structure(Page.of(index(PLAIN)))
    assert name in page.visible_text


def test_an_undefined_variable_or_key_fails_loudly_instead_of_rendering_empty():
    with pytest.raises(jinja2.UndefinedError, match="headline"):
        rendering.render("alerts/title.txt.j2", alert={"severity": "info", "occurrence": "new"})
    with pytest.raises(jinja2.UndefinedError, match="run_id"):
        rendering.environment("markdown").from_string("run {{ quality.run_id }}").render(quality={})
    with pytest.raises(jinja2.UndefinedError):
        digest_html.render(replace(_digest(PLAIN), month={}), [], [])


def test_every_shipped_template_is_rendered_by_these_tests(monkeypatch):
    rendered: set[str] = set()
    original = jinja2.Environment.get_template

    def recording(self, name, *args, **kwargs):
        rendered.add(name)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "get_template", recording)
    name = hostile.OWNER_BROADCAST
    test_the_html_digest_shows_every_name_as_text_and_nothing_more(name)
    test_the_markdown_digest_has_no_markup_links_or_images_from_a_name(name)
    test_slack_texts_have_no_mention_broadcast_or_link_from_a_name(name)
    test_the_email_subject_is_one_header_line_and_the_body_keeps_the_text(name)
    test_every_reproduce_query_keeps_a_name_a_string_literal(name)
    test_a_key_notice_lists_each_key_verbatim_and_reaches_slack_escaped(name)
    test_a_savings_notice_keeps_names_verbatim_and_reaches_slack_mail_and_sql_escaped(name)
    test_the_digest_subject_is_one_header_line()
    test_blind_spot_sentences_keep_a_dataset_and_reason_verbatim(name)
    test_the_data_docs_index_shows_a_check_message_as_text(name)
    test_the_cli_summary_without_a_warehouse_says_how_to_make_one(ROOT / "no-such-dir")
    spend_view = _spend_view()
    Page.of(spend_view._navigation("2026-03-02", [{"day": "2026-03-02", "files": ["a.csv"]}], ""))
    monkeypatch.setattr(spend_view, "_digests", list)
    assert b"No spend digest yet" in spend_view.latest(None).body
    assert rendered >= set(rendering.templates())


@pytest.mark.parametrize("name", STRINGS)
def test_the_spend_view_navigation_keeps_file_names_text(name):
    page = Page.of(_spend_view()._navigation("2026-03-02", [{"day": "2026-03-02", "files": [f"{name}.csv"]}], "../"))
    assert _structure(page) == [("nav", ("style",)), ("style", ()), ("b", ()), ("br", ()), ("a", ("href",))]
    assert page.tags[-1][1]["href"] == f"../2026-03-02/files/{name}.csv"  # the quoted attribute holds the name
    assert name in page.visible_text
