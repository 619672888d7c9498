"""digest.html: one self-contained page (embedded CSS, charts as data URIs) that reads offline, in mail and on A4.

Layout uses tables rather than CSS grid so mail clients render it; every string from the warehouse is escaped.
Sections follow the order finance reads: headline, owners and budgets, what changed and why, alerts, blind
spots and data quality, then the files in the folder.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openrouter_spend import escaping
from openrouter_spend.reports.digest.charts import Chart
from openrouter_spend.reports.digest.data import (
    ACCOUNT,
    PREMIUM_MIN_SPEND_USD,
    PREMIUM_SHARE_RISE,
    UNOWNED,
    DigestData,
    Finding,
    is_significant_move,
)
from openrouter_spend.reports.digest.findings import announcement, correlation_text, waste_basis, why
from openrouter_spend.reports.digest.formatting import (
    DASH,
    count,
    long_day,
    money,
    points,
    share,
    share_with_interval,
    short_day,
    signed_money,
    signed_share,
)
from openrouter_spend.reports.digest.formatting import (
    coverage as coverage_text,
)
from openrouter_spend.reports.digest.tables import CsvTable

# The page's style sheet, embedded so the file reads offline and in mail.
CSS = (Path(__file__).resolve().parent / "digest.css").read_text()

STATUS_LABELS = {"over": "Over budget", "at_risk": "Forecast over", "ok": "On track", "no_owner": "No owner",
                 "no_budget": "No budget"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def e(value: Any) -> str:
    """HTML-escaped text of any value; a dash for missing."""
    return DASH if value is None else escaping.html(value)


def render(data: DigestData, charts: Sequence[Chart], tables: Sequence[CsvTable]) -> str:
    """The whole page as a string."""
    by_name = {chart.name: chart for chart in charts}
    body = [
        _header(data),
        _headline(data, by_name),
        _owners(data, by_name),
        _changes(data, by_name),
        _alerts(data),
        _blind_spots(data, by_name),
        _files(charts, tables),
        _footer(data),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>OpenRouter spend {data.day.isoformat()}: {money(data.totals['spend_usd'])}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<div class=\"page\">\n" + "\n".join(body) + "\n</div>\n</body>\n</html>\n"
    )


def _figure(chart: Chart | None) -> str:
    if chart is None:
        return ""
    encoded = base64.b64encode(chart.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{e(chart.alt)}" data-chart="{e(chart.name)}">'
            f"<figcaption>{e(chart.alt)}</figcaption></figure>")


def _table(headers: Iterable[tuple[str, bool]], rows: Iterable[Iterable[tuple[str, bool]]],
           row_classes: Iterable[str] | None = None) -> str:
    """A data table; each header and cell is (html, numeric)."""
    head = "".join(f'<th class="n">{h}</th>' if numeric else f"<th>{h}</th>" for h, numeric in headers)
    body = []
    classes = list(row_classes) if row_classes is not None else None
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="n">{c}</td>' if numeric else f"<td>{c}</td>" for c, numeric in row)
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _header(data: DigestData) -> str:
    return (f'<header><p class="brand">OpenRouter spend · daily finance digest</p>'
            f"<h1>{e(long_day(data.day))}</h1>"
            f'<p class="meta">UTC day {data.day.isoformat()} · amounts in US dollars of OpenRouter credits unless '
            f"marked BYOK · source: {e(data.source)}</p></header>")


def _trend_class(change: float | None) -> str:
    if change is None:
        return ""
    return "up" if change > 0.005 else "down" if change < -0.005 else ""


def _headline(data: DigestData, charts: dict[str, Chart]) -> str:
    parts = ['<section id="headline"><h2><span class="num">1</span>Headline</h2>']
    if not data.has_data:
        parts.append(f'<p class="lead">No usage or credit data is loaded for {e(long_day(data.day))}. '
                     "The pipeline has not loaded this day (or it fell outside the API's 30-day window); "
                     "nothing below is a zero, it is unknown.</p></section>")
        return "".join(parts)
    balance = data.balance or {}
    spend = data.totals["spend_usd"]
    average = balance.get("burn_7d_avg_usd")
    vs_average = (spend / average - 1) if average else None
    runway = balance.get("runway_days")
    runway_class = ("critical" if runway is not None and runway < 7 else
                    "warning" if runway is not None and runway < 14 else "")
    topup = balance.get("topup_usd")
    last_topup = next((row for row in reversed(data.balance_trend) if row.get("topup_usd")), None)
    if balance and balance.get("balance_usd") is None:
        balance_note = "unknown: this day's /credits snapshot was fetched after the following day ended"
    elif topup:
        balance_note = f"after a {money(topup)} top-up today"
    elif last_topup:
        balance_note = f"last top-up {money(last_topup['topup_usd'])} on {short_day(last_topup['as_of_date'])}"
    else:
        balance_note = "no top-up in the last 30 days"
    month = data.month
    forecast = month.get("configured_forecast_usd")
    cards = [
        ("", f"Spent {short_day(data.day)}", money(spend),
         f'<span class="{_trend_class(vs_average)}">{signed_share(vs_average)}</span> vs 7-day average '
         f"{money(average)}" if average else "no 7-day average yet"),
        ("", "Credit balance", money(balance.get("balance_usd")), e(balance_note)),
        (runway_class, "Runway", f"{runway:.1f} days" if runway is not None else DASH,
         f"runs out around {short_day(balance.get('projected_depletion_date'))} at the 7-day burn"
         if runway is not None else "no end-of-day balance" if balance and balance.get("balance_usd") is None
         else "no burn to project"),
        ("", "Month to date", money(month["month_to_date_usd"]),
         f"{month['loaded_days']} of {month['days_elapsed']} days loaded"
         + (f" · projects forecast {money(forecast, 0)} by month end" if forecast is not None else "")),
    ]
    cells = "".join(
        f'<td class="kpi {css}"><div class="kpi-label">{e(label)}</div><div class="kpi-value">{e(value)}</div>'
        f'<div class="kpi-note">{note}</div></td>' for css, label, value, note in cards)
    parts.append(f'<table class="kpis" role="presentation"><tr>{cells}</tr></table>')
    byok = data.totals["byok_spend_usd"]
    parts.append(f'<p class="small muted">{count(data.totals["requests"])} requests from '
                 f'{count(data.totals["active_keys"])} API keys.'
                 + (f" Plus {money(byok)} of BYOK inference billed by the providers directly (an estimate at market "
                    "rates, not paid from credits and not included above)." if byok else "") + "</p>")
    parts.append("<h3>What needs attention</h3>")
    parts.append(_findings(data.findings))
    parts.append(_figure(charts.get("burn_and_runway.png")))
    parts.append("</section>")
    return "".join(parts)


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return '<p class="muted">Nothing stands out: budgets on track, runway comfortable, moves explained.</p>'
    ordered = sorted(findings, key=lambda finding: SEVERITY_ORDER.get(finding.severity, 3))
    items = "".join(
        f'<li class="{e(f.severity)}">{e(f.text)}'
        + (f' <span class="who">→ {e(f.owner)}</span>' if f.owner else "") + "</li>" for f in ordered)
    return f'<ul class="findings">{items}</ul>'


def _bar(ratio: float | None, status: str) -> str:
    if ratio is None:
        return ""
    width = max(0.0, min(ratio, 1.0)) * 100
    css = status if status in ("over", "at_risk") and ratio > 1 else ""
    return f'<span class="bar"><span class="{css}" style="width:{width:.0f}%"></span></span>'


def _owners(data: DigestData, charts: dict[str, Chart]) -> str:
    parts = ['<section id="owners"><h2><span class="num">2</span>Owners and budget status</h2>']
    if not data.budgets:
        parts.append('<p class="muted">No configured projects have budget figures for this day.</p></section>')
        return "".join(parts)
    rows, classes = [], []
    for row in data.budgets:
        status = row["status"]
        launch = row.get("velocity_multiplier")
        launch_note = f'<span class="sub">launch window ×{launch:g}</span>' if launch and launch != 1 else ""
        daily = row.get("effective_daily_budget_usd")
        monthly = row.get("effective_monthly_budget_usd")
        owner = (f"{e(row.get('budget_owner'))}<span class=\"sub\">{e(row.get('team'))}</span>"
                 if row["project"] != UNOWNED else '<span class="unexplained">nobody</span>')
        rows.append([
            (e(row["project"]), False),
            (owner, False),
            (f"{money(row['spend_usd'])}<span class=\"sub\">of {money(daily, 0)} "
             f"({share(row.get('daily_budget_used_ratio'))})</span>{launch_note}" if daily is not None
             else money(row["spend_usd"]), True),
            (f"{money(row['month_to_date_spend_usd'])}<span class=\"sub\">of {money(monthly, 0)}</span>"
             if monthly is not None else money(row["month_to_date_spend_usd"]), True),
            (f"{money(row.get('forecast_month_end_spend_usd'))}{_bar(row.get('forecast_monthly_budget_ratio'), status)}"
             f"<span class=\"sub\">{share(row.get('forecast_monthly_budget_ratio'))} of monthly budget</span>"
             if row.get("forecast_month_end_spend_usd") is not None else DASH, True),
            (f'<span class="pill {status}">{STATUS_LABELS[status]}</span>', False),
        ])
        classes.append("")
    total_day = sum(row["spend_usd"] or 0 for row in data.budgets)
    total_month = sum(row["month_to_date_spend_usd"] or 0 for row in data.budgets)
    rows.append([("All projects", False), ("", False), (money(total_day), True), (money(total_month), True),
                 ("", True), ("", False)])
    classes.append("total")
    parts.append(_table([("Project", False), ("Budget owner", False), ("Spent today", True),
                         ("Month to date", True), ("Month-end forecast", True), ("Status", False)], rows, classes))
    parts.append('<p class="small muted">Budgets are in credits; launch windows raise the expected spend for their '
                 "days (the figures shown are the raised budgets). The forecast adds the usual daily rate, launches "
                 "factored out, for the days left in the month.</p>")
    parts.append(_figure(charts.get("spend_by_project.png")))
    parts.append("</section>")
    return "".join(parts)


def _explained(annotations: Sequence[dict[str, Any]], significant: bool,
               against: Sequence[dict[str, Any]] = ()) -> str:
    if annotations:
        return "".join(f'<span class="explained">{e(a["kind"])}: {e(a["description"])}</span>' for a in annotations)
    if not significant:
        return '<span class="muted">—</span>'
    if against:  # covered by an annotation that announced another move: news, and say which
        return "".join(f'<span class="unexplained">unexplained: {e(a["annotation_id"])} announced '
                       f"{e(announcement(a))}</span>" for a in against)
    return '<span class="unexplained">unexplained</span>'


def _changes(data: DigestData, charts: dict[str, Chart]) -> str:
    parts = ['<section id="changes"><h2><span class="num">3</span>What changed and why</h2>']
    account = next((c for c in data.changes if c["project"] == ACCOUNT), None)
    if account is None or account.get("delta_usd") is None:
        parts.append('<p class="muted">No comparison: the day before is not loaded, so there is no change to '
                     "decompose.</p>")
    else:
        delta, prior = account["delta_usd"], account["prior_spend_usd"]
        relative = f" ({signed_share(delta / prior)})" if prior else ""
        sentence = (f"Account spend {'rose' if delta > 0 else 'fell' if delta < 0 else 'held'} "
                    f"{money(abs(delta))}{relative} from {money(prior)} the day before: {why(account)}.")
        wasted = account.get("wasted_spend_usd")
        if wasted and abs(wasted - (account.get("waste_effect_usd") or 0)) >= 0.005:
            sentence += f" The day's wasted spend (loops, duplicates, retries) is {money(wasted)}: see Likely waste."
        if account.get("wow_delta_usd") is not None:
            sentence += (f" Against the same weekday last week ({money(account['prior_week_spend_usd'])}): "
                         f"{signed_money(account['wow_delta_usd'])}, {why(account, 'wow_')}.")
        parts.append(f'<p class="lead">{e(sentence)}</p>')
    movers = [c for c in data.changes if c["project"] != ACCOUNT]
    if any(c.get("delta_usd") is not None for c in movers):
        rows = []
        for change in movers:
            delta, prior = change.get("delta_usd"), change.get("prior_spend_usd")
            significant = is_significant_move(delta, prior)
            rows.append([
                (f"{e(change['project'])}<span class=\"sub\">{e(change.get('budget_owner') or '')}</span>", False),
                (money(change["spend_usd"]), True),
                (f"{signed_money(delta)}<span class=\"sub\">{signed_share(delta / prior) if prior else DASH}</span>",
                 True),
                (signed_money(change.get("volume_effect_usd")), True),
                (signed_money(change.get("context_effect_usd")), True),
                (signed_money(change.get("mix_price_effect_usd")), True),
                (signed_money(change.get("waste_effect_usd")), True),
                (_explained(change["annotations"], significant, change.get("annotations_against", ())), False),
            ])
        parts.append("<h3>Projects, biggest moves first</h3>")
        parts.append(_table([("Project", False), ("Spent", True), ("vs day before", True), ("Volume", True),
                             ("Context", True), ("Mix/price", True), ("Waste", True), ("Explained by", False)], rows))
        parts.append('<p class="small muted">The four effects add up to the change: <b>volume</b> = more or fewer '
                     "useful requests, <b>context</b> = tokens per request, <b>mix/price</b> = cost per token (models, "
                     "providers, prices), <b>waste</b> = the change of the wasted spend (loops, duplicate jobs, "
                     "retries; the same figure as under Likely waste). For the whole account a shift of traffic "
                     "between projects is its own <b>project mix</b> effect. An annotation explains a move only in "
                     "the direction and roughly the size it announces.</p>")
    parts.append(_premium(data, charts))
    parts.append(_provider_mix(data, charts))
    parts.append("</section>")
    return "".join(parts)


def _premium(data: DigestData, charts: dict[str, Chart]) -> str:
    account = next((p for p in data.premium if p["project"] == ACCOUNT), None)
    if account is None or account.get("premium_spend_share") is None:
        return ""
    parts = ["<h3>Premium-model share</h3>",
             f"<p>Premium models took <b>{share(account['premium_spend_share'])}</b> of credit spend "
             f"({money(account.get('premium_spend_usd'))}) against {share(account.get('premium_spend_share_baseline_28d'))} "
             f"over the previous 28 days ({points(account.get('premium_spend_share_change'))}).</p>"]
    projects = sorted((p for p in data.premium if p["project"] != ACCOUNT
                       and (p.get("spend_usd") or 0) >= PREMIUM_MIN_SPEND_USD
                       and ((p.get("premium_spend_usd") or 0) > 0 or (p.get("premium_spend_share_baseline_28d") or 0) > 0)),
                      key=lambda p: (-(p.get("premium_spend_usd") or 0), p["project"]))
    if projects:
        rows = [[(e(p["project"]), False), (money(p.get("premium_spend_usd")), True),
                 (share(p.get("premium_spend_share")), True), (share(p.get("premium_spend_share_baseline_28d")), True),
                 (points(p.get("premium_spend_share_change")), True),
                 (_explained(p["annotations"], (p.get("premium_spend_share_change") or 0) >= PREMIUM_SHARE_RISE,
                             p.get("annotations_against", ())), False)]
                for p in projects]
        parts.append(_table([("Project", False), ("Premium spend", True), ("Share today", True),
                             ("Previous 28 days", True), ("Change", True), ("Explained by", False)], rows))
    parts.append(_figure(charts.get("premium_share.png")))
    return "".join(parts)


def _provider_mix(data: DigestData, charts: dict[str, Chart]) -> str:
    account = [row for row in data.provider_mix if row["project"] == ACCOUNT]
    if not account:
        return ""
    parts = ["<h3>Provider mix</h3>"]
    top = max(account, key=lambda row: (row.get("spend_share") or 0, row["provider_name"]))
    text = (f"{e(top['provider_name'])} served the largest share of credit spend ({share(top.get('spend_share'))}, "
            f"{points(top.get('spend_share_change_7d'))} against the previous 7 days).")
    drifts = data.provider_shifts
    if drifts:
        moves = "; ".join(
            f"{e(row['project'])} on {e(row['provider_name'])}: {share(row.get('spend_share'))} of its spend "
            f"({points(row['spend_share_change_7d'])})" for row in drifts[:4])
        text += f" Largest shifts within projects: {moves}."
    parts.append(f"<p>{text}</p>")
    explained = {a["annotation_id"]: a for row in drifts for a in row["annotations"]}
    if explained:
        parts.append("<p>" + " ".join(f'<span class="explained">{e(a["kind"])}: {e(a["description"])}</span>'
                                      for _, a in sorted(explained.items())) + "</p>")
    parts.append(_figure(charts.get("provider_mix.png")))
    return "".join(parts)


def _alerts(data: DigestData) -> str:
    parts = ['<section id="alerts"><h2><span class="num">4</span>Alerts</h2>']
    if data.alerts_state == "not_evaluated":
        parts.append('<p class="box not_run"><b>No alerts evaluated.</b> The alert rules have not run for this day, '
                     "so an empty list here does not mean all is well. The findings under “What needs attention” "
                     "come straight from the marts.</p></section>")
        return "".join(parts)
    fired = [a for a in data.alerts if a.get("status") == "fired"]
    if data.alerts_state == "none_fired":
        parts.append('<p class="box passed"><b>Alert rules ran; none fired.</b></p>')
    else:
        parts.append(f"<p>{len(fired)} alert(s) fired for this day.</p>")
    if data.alerts:
        rows = []
        for alert in data.alerts:
            observed, expected = alert.get("observed_value"), alert.get("expected_value")
            rows.append([
                (f'<span class="pill {e(alert.get("status"))}">{e(alert.get("status"))}</span>'
                 f'<span class="sub">{e(alert.get("severity"))}</span>', False),
                (f"{e(alert.get('rule_id'))}<span class=\"sub\">{e(alert.get('metric'))}</span>", False),
                (f"{e(alert.get('project'))}<span class=\"sub\">{e(alert.get('budget_owner') or '')}</span>", False),
                (f"{_number(observed)}<span class=\"sub\">expected {_number(expected)}</span>", True),
                (signed_money(alert.get("impact_usd")), True),
                (e(alert.get("explanation") or correlation_text(alert, data.alerts)), False),
            ])
        parts.append(_table([("Status", False), ("Rule", False), ("Project", False), ("Observed", True),
                             ("Impact", True), ("Explanation", False)], rows))
    parts.append("</section>")
    return "".join(parts)


def _number(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    return e(value)


def _blind_spots(data: DigestData, charts: dict[str, Chart]) -> str:
    parts = ['<section id="blind-spots"><h2><span class="num">5</span>Blind spots and data quality</h2>']
    quality = data.quality or {}
    if data.quality_state == "not_run":
        parts.append('<p class="box not_run"><span class="pill not_run">not run</span> The data-quality gate has not '
                     "run for this day: these figures have not been validated.</p>")
    else:
        failed = quality.get("failed_count")
        summary = quality.get("summary")
        label = "passed" if data.quality_state == "passed" else "failed"
        detail = (f" {count(failed)} check(s) failed." if data.quality_state == "failed" and failed is not None else "")
        parts.append(f'<p class="box {label}"><span class="pill {label}">{label}</span> Data-quality gate '
                     f"{label} (run {e(quality.get('run_id'))}).{e(detail)}"
                     + (f" {e(summary)}" if summary else "") + "</p>")
        failed_checks = quality.get("failed_checks") or []
        if failed_checks:
            parts.append('<ul class="plain small">' + "".join(
                f"<li><b>{e(c['severity'])}</b> {e(c['check_id'])}: {e(c.get('message') or c['description'])}</li>"
                for c in failed_checks) + "</ul>")
    parts.append(_blind_spot_table(data))
    parts.append("<h3>What the data cannot see</h3>")
    parts.append("<ul class=\"plain\">" + "".join(f"<li>{e(spot)}</li>" for spot in data.blind_spots)
                 + "</ul>" if data.blind_spots else '<p class="muted">No known blind spots for this day.</p>')
    if data.fallback:
        rows = [[(e(f["project"]), False),
                 (f"{count(f['requests'])}<span class=\"sub\">{_coverage(f)}</span>", True),
                 (share_with_interval(f["fallback_share"], f.get("fallback_share_ci_low"),
                                      f.get("fallback_share_ci_high")), True),
                 (_money_with_interval(f["fallback_spend_usd"], f.get("fallback_spend_usd_ci"), f), True),
                 (_money_with_interval(f["fallback_extra_cost_usd"], f.get("fallback_extra_cost_usd_ci"), f, signed=True),
                  True)]
                for f in data.fallback]
        parts.append("<h3>Fallbacks (projects with per-request data)</h3>")
        parts.append(_table([("Project", False), ("Requests (logged)", True), ("Fallback share", True),
                             ("Spend served by fallback", True), ("Extra cost", True)], rows))
        parts.append('<p class="small muted">Estimated from the logged requests and scaled to each project\'s traffic '
                     "(the logged share is under the request count); 95% intervals in brackets. A census (every "
                     "request logged and classified) has no interval.</p>")
        parts.append(_figure(charts.get("fallback_share.png")))
    if data.unowned_keys:
        rows = [[(e(k["api_key"]), False), (e(k.get("workspace_name")), False), (money(k["spend_usd"]), True),
                 (count(k["requests"]), True)] for k in data.unowned_keys[:10]]
        parts.append("<h3>Spend nobody owns</h3>")
        parts.append(_table([("API key", False), ("Workspace", False), ("Spent", True), ("Requests", True)], rows))
    if data.waste:
        rows = [[(e(w["api_key_name"] or w["api_key_hash"]), False), (e(w["project"]), False),
                 (f"{w['request_ratio']:.1f}×" if w.get("request_ratio") else DASH, True),
                 (money(w["spend_usd"]), True),
                 (f"{money(w['wasted_spend_usd'])}<span class=\"sub\">{e(waste_basis(w))}</span>", True)]
                for w in data.waste]
        parts.append("<h3>Likely waste (loops, duplicate jobs)</h3>")
        parts.append(_table([("API key", False), ("Project", False), ("Requests vs usual", True), ("Spent", True),
                             ("Estimated waste", True)], rows))
    if data.unused_keys:
        names = ", ".join(f"{e(k['api_key_name'])} ({e(k['project'].strip('()'))})" for k in data.unused_keys)
        parts.append(f'<p class="small">Unused keys (enabled, idle): {names}.</p>')
    parts.append("</section>")
    return "".join(parts)


def _coverage(row: dict[str, Any]) -> str:
    """Logged requests and their share of the traffic, or "census"."""
    if row.get("is_census"):
        return "census"
    coverage = row.get("coverage_share")
    logged = count(row.get("logged_requests"))
    return f"{logged} logged" if coverage is None else f"{logged} logged, {coverage_text(coverage)}"


def _money_with_interval(value: float | None, bounds: tuple | None, row: dict[str, Any], *,
                         signed: bool = False) -> str:
    shown = signed_money(value) if signed else money(value)
    if row.get("fallback_share") == 0 and not row.get("is_census"):
        return f'{shown}<span class="sub">no fallback in the sample</span>'
    low, high = bounds or (None, None)
    if low is None or high is None or round(low, 2) == round(high, 2):
        return shown
    return f"{shown}<span class=\"sub\">95% CI {money(low)}–{money(high)}</span>"


BLIND_SPOT_COLUMNS = {"project", "spend_usd", "byok_spend_share", "per_request_request_coverage_share",
                      "unattributed_spend_usd", "blind_spots"}


def _blind_spot_table(data: DigestData) -> str:
    """The quality issue's per-project blind-spot report (marts.rpt_blind_spots_daily), when it exists."""
    if not data.blind_spot_rows or not BLIND_SPOT_COLUMNS <= set(data.blind_spot_rows[0]):
        return ""
    rows = []
    for row in data.blind_spot_rows:
        labels = row.get("blind_spots") or []
        coverage = row.get("per_request_request_coverage_share")
        rows.append([
            ("Whole account" if row["project"] == ACCOUNT else e(row["project"]), False),
            (money(row.get("spend_usd")), True),
            (share(row.get("byok_spend_share"), 1) if row.get("byok_spend_share") else DASH, True),
            (coverage_text(coverage) if coverage is not None else "unknown", True),
            (money(row.get("unattributed_spend_usd")) if row.get("unattributed_spend_usd") else DASH, True),
            (e(", ".join(labels)) if labels else '<span class="muted">none</span>', False),
        ])
    return ("<h3>Blind spots by project</h3>"
            + _table([("Project", False), ("Credit spend", True), ("BYOK share (estimated)", True),
                      ("Per-request coverage", True), ("Unattributed", True), ("Blind spots", False)], rows))


def _files(charts: Sequence[Chart], tables: Sequence[CsvTable]) -> str:
    items = "".join(f"<li><code>{e(t.name)}</code> — {e(t.description)}</li>" for t in tables)
    items += "".join(f"<li><code>charts/{e(c.name)}</code></li>" for c in charts)
    return (f'<section id="files"><h2><span class="num">6</span>Files in this folder</h2>'
            f'<ul class="plain small"><li><code>digest.md</code> — this digest as Markdown</li>{items}</ul>'
            '<p class="small muted">The FOCUS 1.0 export of the day (for FinOps tools) is in the '
            "<code>focus/</code> folder beside <code>digests/</code>.</p></section>")


def _footer(data: DigestData) -> str:
    return (f"<footer>Built from the <code>marts</code> schema for the UTC day {data.day.isoformat()}. "
            "Credit spend is what OpenRouter charges against prepaid credits (BYOK fees included); BYOK inference "
            "itself is billed by the providers. Methods: docs/marts.md.</footer>")
